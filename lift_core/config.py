"""The training settings, declared once: each TrainConfig field carries its help text and its CLI flag.

The CLI's `train` flags, the estimators' parameters and the Train tab's controls all follow these fields (and
tests check that they do). This module imports no torch, so reading or checking settings is instant.
"""

import math
from dataclasses import dataclass, field, fields

from lift_core import models, prompts
from lift_core.data import TASKS
from lift_core.errors import LiftError


def setting(default, help: str, label: str = "", flag: str = "", choices: tuple = ()):
    """A TrainConfig field: its default, what it means (the CLI's --help and the Train tab's info line), the
    Train tab's label, and the CLI flag when it is not `--field-name`."""
    return field(default=default, metadata={"help": help, "label": label, "flag": flag, "choices": choices})


# The settings that made training several times cheaper on a CPU (issue 15), at the values that reproduce the
# training before them: the "Previous defaults" preset, and what a run saved before they existed used.
PREVIOUS_DEFAULTS = {"lora_layers": 0, "trim_zeros": False, "evaluations": 6, "stop_when_perfect": 0}

# Far beyond any useful run; a bound keeps the planned step count a number.
MAX_EPOCHS = 100_000


@dataclass
class TrainConfig:
    data: str = setting("", "the training table (CSV, TSV, Parquet, Excel or JSON lines)")
    target: str = setting("", "the column to predict")
    features: list[str] | None = setting(None, "comma-separated feature columns; default: every other column")
    task: str | None = setting(None, "default: detected from the target column", choices=TASKS)
    test_data: str | None = setting(None, "a separate test table; otherwise test_size of the data is held out")
    val_data: str | None = setting(None, "a separate validation table; otherwise val_size of the training rows "
                                         "are held out")
    template: str = setting("lift", "how a row becomes a sentence", label="Template", choices=prompts.TEMPLATE_KINDS)
    template_text: str | None = setting(None, "a custom template with {column} placeholders", label="Custom template")
    decimals: int = setting(2, "digits kept after the point of each number", label="Decimals")
    trim_zeros: bool = setting(False, "write numbers without trailing zeros (5.10 as 5.1, 3.00 as 3): the same "
                                      "values in fewer tokens, but numbers of one column no longer line up digit by "
                                      "digit", label="Drop trailing zeros")
    model: str = setting(models.DEFAULT_MODEL, "an alias (see `models`), a hub id or a local folder")
    quant: str = setting("auto", "auto: 4bit on a CUDA GPU, none otherwise", label="Quantization",
                         choices=models.QUANT_MODES)
    lora_r: int = setting(8, "rank of the LoRA update matrices", label="Rank r")
    lora_alpha: int = setting(16, "LoRA scaling: the update is multiplied by alpha / r", label="Alpha")
    lora_dropout: float = setting(0.05, "dropout on the LoRA input", label="Dropout")
    lora_targets: str = setting("all-linear", "'all-linear' or comma-separated module names, e.g. q_proj,v_proj",
                                label="Target modules")
    lora_layers: int = setting(
        0, "LoRA on this many of the model's last transformer layers only; the frozen layers below then run once "
           "per row (their output is cached), so each step runs and backpropagates through these layers alone; "
           "0: LoRA on every layer", label="LoRA layers (from the top)")
    # The budget is min(epochs, max_steps): small tables get enough updates, large ones stop at max_steps.
    epochs: float = setting(20.0, "the run trains min(epochs, max steps) steps; 0: no epoch cap", label="Epochs")
    max_steps: int = setting(300, "at most this many optimizer steps; 0: no cap, train for all the epochs",
                             label="Max steps")
    lr: float = setting(1e-3, "peak learning rate of AdamW", label="Learning rate")
    warmup: float = setting(0.06, "share of the steps over which the learning rate rises; then it decays "
                                  "linearly to 0", label="Warm-up share")
    batch_size: int = setting(4, "rows per optimizer step on each training process", label="Batch size")
    test_size: float = setting(0.2, "share of the rows held out for the test set (without --test-data)")
    val_size: float = setting(0.1, "share of the rows held out to validate, choose the best step and stop early",
                              label="Validation fraction")
    seed: int = setting(0, "seed of the split, the LoRA initialisation and the batch order", label="Seed")
    logging_steps: int = setting(0, "log the train loss every N steps; 0: about 50 points per run",
                                 label="Log the train loss every (steps)")
    eval_steps: int = setting(0, "evaluate on the validation rows every N steps; 0: `evaluations` per run",
                              label="Evaluate on the validation rows every (steps)")
    evaluations: int = setting(6, "validation evaluations per run, evenly spaced, when eval_steps is 0",
                               label="Evaluations per run")
    save_steps: int = setting(0, "also save a checkpoint every N steps; 0: only at each epoch's end, every 5 "
                                 "minutes and on a stop (what --resume continues from)")
    max_example_tokens: int = setting(
        2048, "the longest example (prompt and answer, in tokens) a run accepts; a table with longer rows is refused "
              "before training. The model's context length caps it too", label="Longest example (tokens)")
    early_stopping_patience: int = setting(
        0, "stop after this many evaluations without a better validation score; 0: off", flag="--early-stopping")
    stop_when_perfect: int = setting(
        2, "classification: stop once the validation accuracy has been perfect at this many evaluations in a row "
           "(the best weights are kept); 0: never", label="Stop after perfect evaluations")
    eval_samples: int = setting(5, "regression: answers sampled per test row; their mean is the prediction")
    eval_temperature: float = setting(0.7, "regression: temperature of those samples")
    num_processes: int = setting(
        1, "training processes, one per GPU; above 1 the run is launched through `accelerate launch` as data-parallel "
           "training, each process taking batch-size rows per step", label="GPUs")
    trust_remote_code: bool = setting(False, "run the model repository's own code (only for models you trust)")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def of_run(cls, saved: dict) -> "TrainConfig":
        """A run's saved settings; a setting added after the run was made takes the value that behaves as the
        code did before it existed, so an old run predicts and resumes as it trained."""
        return cls.from_dict({**PREVIOUS_DEFAULTS, **saved})

    def lora_settings(self) -> models.LoraSettings:
        targets = self.lora_targets if self.lora_targets == "all-linear" else split_list(self.lora_targets)
        return models.LoraSettings(self.lora_r, self.lora_alpha, self.lora_dropout, targets, self.lora_layers)

    @property
    def validation_batch_size(self) -> int:
        """Rows per batch when the validation rows are scored: no gradients are kept, so more fit than in training."""
        return 4 * self.batch_size

    def planned_steps(self, n_train: int, processes: int = 1) -> int:
        """min(epochs, max_steps): enough updates for a small table, no more than max_steps for a large one.

        `processes` data-parallel processes each take a batch per step, so an epoch takes that many times fewer.
        """
        epoch_batches = math.ceil(n_train / (self.batch_size * processes))
        epoch_steps = max(1, math.ceil(epoch_batches * self.epochs)) if self.epochs > 0 else 0
        if self.max_steps > 0:
            return min(epoch_steps, self.max_steps) if epoch_steps else self.max_steps
        return epoch_steps

    def check(self) -> None:
        problems = self._type_problems()
        if problems:  # the value checks below would fail on a value of the wrong type
            raise LiftError("Invalid training settings: " + "; ".join(problems) + ".")
        at_least_one = {"batch_size": "batch size", "evaluations": "evaluations per run",
                        "eval_samples": "eval_samples", "lora_r": "LoRA rank",
                        "max_example_tokens": "the longest example (in tokens)",
                        "num_processes": "the number of training processes"}
        problems += [f"{label} must be at least 1" for name, label in at_least_one.items() if getattr(self, name) < 1]
        if not 0 < self.lr < 1:
            problems.append("learning rate must be between 0 and 1")
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append("give a positive number of epochs or max steps")
        never_negative = ("lora_layers", "epochs", "max_steps", "logging_steps", "eval_steps", "save_steps",
                          "early_stopping_patience", "stop_when_perfect", "decimals", "eval_temperature")
        problems += [f"{name} must not be negative" for name in never_negative if getattr(self, name) < 0]
        if self.epochs > MAX_EPOCHS:
            problems.append(f"epochs must be at most {MAX_EPOCHS:,}")
        if self.lora_alpha <= 0:
            problems.append("LoRA alpha must be positive")
        if not 0 <= self.warmup < 1:
            problems.append("warm-up must be a share of the steps in [0, 1)")
        if not 0 <= self.lora_dropout < 1:
            problems.append("LoRA dropout must be in [0, 1)")
        if problems:
            raise LiftError("Invalid training settings: " + "; ".join(problems) + ".")
        models.resolve_quantization(self.quant)
        if self.model not in models.ALIASES:
            models.resolve_model(self.model)  # a missing local folder fails now; a hub id loads later

    def _type_problems(self) -> list[str]:
        """A value of another type than its setting's (what a hand-written settings file can hold)."""
        problems = []
        for setting_field in fields(self):
            value, default = getattr(self, setting_field.name), setting_field.default
            if setting_field.name == "features":
                fits = value is None or (isinstance(value, list) and all(isinstance(item, str) for item in value))
                expected = "a list of column names"
            elif default is None or isinstance(default, str):
                fits, expected = isinstance(value, str) or (default is None and value is None), "text"
            elif isinstance(default, bool):
                fits, expected = isinstance(value, bool), "true or false"
            elif isinstance(default, int):
                fits, expected = isinstance(value, int) and not isinstance(value, bool), "a whole number"
            else:
                fits = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
                expected = "a finite number"
            if not fits:
                problems.append(f"{setting_field.name} must be {expected}, not {value!r}")
        return problems

    def template_for(self, features: list[str], target: str) -> prompts.PromptTemplate:
        return prompts.PromptTemplate(features=features, target=target, kind=self.template,
                                      decimals=self.decimals, text=self.template_text, trim_zeros=self.trim_zeros)


def split_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']: how every comma-separated list a person types is read."""
    return [item.strip() for item in text.split(",") if item.strip()]


DEFAULTS = TrainConfig()
SETTINGS = {setting_field.name: setting_field for setting_field in fields(TrainConfig)}
