"""Finetune a causal LM with (Q)LoRA on serialized rows, writing everything into a run folder."""

import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from lift_core import data, models, prompts
from lift_core.errors import LiftError
from lift_core.evaluation import evaluate_run
from lift_core.runs import Run, create_run


@dataclass
class TrainConfig:
    data: str = ""
    target: str = ""
    features: list[str] | None = None
    task: str | None = None
    test_data: str | None = None  # a separate test table; otherwise test_size of `data` is held out
    template: str = "lift"
    template_text: str | None = None
    decimals: int = 2
    model: str = models.DEFAULT_MODEL
    quant: str = "auto"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"  # or a comma-separated list of module names
    epochs: float = 3.0
    max_steps: int = 0  # 0: run the epochs
    lr: float = 1e-3
    batch_size: int = 8
    test_size: float = 0.2
    val_size: float = 0.1
    seed: int = 0
    logging_steps: int = 0  # 0: about 50 points per run, for the live loss plot
    eval_steps: int = 0  # 0: about 10 evaluations per run
    save_steps: int = 0  # 0: no intermediate checkpoints
    early_stopping_patience: int = 0  # 0: off; else evaluations without improvement before stopping
    eval_samples: int = 5  # regression: samples drawn per test row
    eval_temperature: float = 0.7
    trust_remote_code: bool = False
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def lora_settings(self) -> models.LoraSettings:
        targets = self.lora_targets
        if targets != "all-linear":
            targets = [name.strip() for name in targets.split(",") if name.strip()]
        return models.LoraSettings(self.lora_r, self.lora_alpha, self.lora_dropout, targets)

    def check(self) -> None:
        problems = []
        if self.batch_size < 1:
            problems.append("batch size must be at least 1")
        if not 0 < self.lr < 1:
            problems.append("learning rate must be between 0 and 1")
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append("give a positive number of epochs or max steps")
        if self.lora_r < 1:
            problems.append("LoRA rank must be at least 1")
        if not 0 <= self.lora_dropout < 1:
            problems.append("LoRA dropout must be in [0, 1)")
        if problems:
            raise LiftError("Invalid training settings: " + "; ".join(problems) + ".")
        models.resolve_quantization(self.quant)
        if self.model not in models.ALIASES:
            models.resolve_model(self.model)  # a missing local folder fails now; a hub id loads later


def build_template(config: TrainConfig, features: list[str], target: str) -> prompts.PromptTemplate:
    return prompts.PromptTemplate(
        features=features, target=target, kind=config.template,
        decimals=config.decimals, text=config.template_text,
    )


def load_splits(config: TrainConfig) -> tuple[data.Dataset, data.Splits]:
    table = data.load_table(config.data)
    dataset = data.prepare_dataset(table, config.target, config.features, config.task)
    if not config.test_data:
        return dataset, data.split_dataset(dataset, config.test_size, config.val_size, config.seed)
    test = data.conform_test_table(data.load_table(config.test_data), dataset)
    # Hold nothing out of the training table for testing: the separate table is the test set.
    pool = data.split_dataset(dataset, 0.0, config.val_size, config.seed)
    return dataset, data.Splits(train=pool.train, val=pool.val, test=test)


def encode_examples(frame, template, tokenizer) -> list[dict]:
    """Token ids of prompt + answer, with the loss masked to the answer tokens."""
    encoded = []
    for row in frame.to_dict("records"):
        prompt_text, completion_text = template.example(row)
        prompt_ids = tokenizer(prompt_text)["input_ids"]
        answer_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
        answer_ids = answer_ids + [tokenizer.eos_token_id]
        encoded.append({
            "input_ids": prompt_ids + answer_ids,
            "labels": [-100] * len(prompt_ids) + answer_ids,
        })
    return encoded


class PadCollator:
    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        width = max(len(example["input_ids"]) for example in examples)
        batch = {"input_ids": [], "labels": [], "attention_mask": []}
        for example in examples:
            padding = width - len(example["input_ids"])
            batch["input_ids"].append(example["input_ids"] + [self.pad_token_id] * padding)
            batch["labels"].append(example["labels"] + [-100] * padding)
            batch["attention_mask"].append([1] * len(example["input_ids"]) + [0] * padding)
        return {key: torch.tensor(value) for key, value in batch.items()}


class StopRequest:
    """Turns SIGTERM, SIGINT and the run's stop file into one flag the trainer checks each step.

    A context manager: the caller's own signal handlers come back afterwards, so Ctrl-C works again
    after an in-process fit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, run: Run):
        self.run = run
        self.signalled = False
        self.previous_handlers = {}

    def __enter__(self) -> "StopRequest":
        # Only the main thread may set handlers; the Python API can be called from any thread.
        if threading.current_thread() is threading.main_thread():
            self.previous_handlers = {signum: signal.signal(signum, self._on_signal) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous_handlers.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum, frame):
        self.signalled = True

    @property
    def requested(self) -> bool:
        return self.signalled or self.run.stop_requested()


def _metrics_callback(run: Run, stop: StopRequest):
    from transformers import TrainerCallback

    class RunMetricsCallback(TrainerCallback):
        """Appends one metrics.jsonl row per log event and honours stop requests."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.time()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            elapsed = time.time() - self.started
            step = state.global_step
            per_step = elapsed / step if step else None
            run.append_metrics({
                "step": step,
                "total_steps": state.max_steps,
                "epoch": round(state.epoch or 0.0, 4),
                "loss": logs.get("loss"),
                "eval_loss": logs.get("eval_loss"),
                "learning_rate": logs.get("learning_rate"),
                "grad_norm": logs.get("grad_norm"),
                "elapsed_s": round(elapsed, 3),
                "eta_s": round(per_step * (state.max_steps - step), 1) if per_step else None,
                "tokens_per_s": round(state.num_input_tokens_seen / elapsed, 1) if elapsed else None,
            })
            if "loss" in logs:
                print(f"step {step}/{state.max_steps} loss {logs['loss']:.4f} ({elapsed:.0f}s)", flush=True)

        def on_step_end(self, args, state, control, **kwargs):
            if stop.requested:
                control.should_training_stop = True

    return RunMetricsCallback()


def planned_steps(config: TrainConfig, n_train: int) -> int:
    if config.max_steps > 0:
        return config.max_steps
    return max(1, math.ceil(math.ceil(n_train / config.batch_size) * config.epochs))


def _training_arguments(config: TrainConfig, run: Run, n_train: int, has_validation: bool):
    from transformers import TrainingArguments

    total = planned_steps(config, n_train)
    logging_steps = config.logging_steps or min(10, max(1, total // 50))
    eval_steps = config.eval_steps or max(1, total // 10)
    evaluate = "steps" if has_validation else "no"
    early_stopping = has_validation and config.early_stopping_patience > 0
    save_steps = eval_steps if early_stopping else config.save_steps
    return TrainingArguments(
        output_dir=str(run.path / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps > 0 else -1,
        lr_scheduler_type="linear",
        warmup_steps=0,
        logging_steps=logging_steps,
        logging_first_step=True,
        eval_strategy=evaluate,
        eval_steps=eval_steps,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        load_best_model_at_end=early_stopping,
        metric_for_best_model="eval_loss" if early_stopping else None,
        greater_is_better=False if early_stopping else None,
        train_sampling_strategy="group_by_length",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=models.compute_dtype() == torch.bfloat16,
        report_to="none",
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_pin_memory=False,
    )


def train_model(config: TrainConfig, run: Run, dataset: data.Dataset, splits: data.Splits, stop: StopRequest):
    """Finetune and save the adapter. Returns (peft model, tokenizer, stopped?)."""
    from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, set_seed

    set_seed(config.seed)
    template = build_template(config, dataset.features, dataset.target)
    loaded = models.load_model(config.model, config.quant, config.trust_remote_code)
    model = models.add_lora(loaded, config.lora_settings())
    tokenizer = loaded.tokenizer
    train_set = encode_examples(splits.train, template, tokenizer)
    val_set = encode_examples(splits.val, template, tokenizer)
    callbacks = [_metrics_callback(run, stop)]
    if val_set and config.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(config.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=_training_arguments(config, run, len(train_set), has_validation=bool(val_set)),
        train_dataset=train_set,
        eval_dataset=val_set or None,
        data_collator=PadCollator(tokenizer.pad_token_id),
        callbacks=callbacks,
    )
    # Our callback prints one line per log step; the default printer would repeat it as a dict.
    trainer.remove_callback(PrinterCallback)
    run.set_status("running", quantization=loaded.quantization, hardware=models.hardware_summary())
    trainer.train()
    model.save_pretrained(run.adapter_dir)
    return model, tokenizer, stop.requested


def record_dataset(run: Run, dataset: data.Dataset, splits: data.Splits) -> None:
    run.splits_dir.mkdir(exist_ok=True)
    for name in ("train", "val", "test"):
        getattr(splits, name).to_csv(run.splits_dir / f"{name}.csv", index=False)
    train_targets = splits.train[dataset.target]
    info = {
        "task": dataset.task,
        "target": dataset.target,
        "features": dataset.features,
        "classes": dataset.classes,
        "n_dropped": dataset.n_dropped,
        "n_train": len(splits.train),
        "n_val": len(splits.val),
        "n_test": len(splits.test),
        # Regression falls back to this when every sample of a row is unparsable, as in the paper.
        "train_target_mean": float(np.mean(train_targets)) if dataset.task == "regression" else None,
    }
    (run.path / "dataset.json").write_text(json.dumps(info, indent=2))


def run_training(config: TrainConfig, out_dir, splits_loaded=None) -> Run:
    """The whole job behind `lift_core train`: data, finetuning, test evaluation, all recorded in the run.

    `splits_loaded` lets the Python API pass in-memory data instead of a file.
    """
    config.check()
    # Bad data fails here, before a run folder exists, so the same --out can be used again.
    dataset, splits = splits_loaded or load_splits(config)
    build_template(config, dataset.features, dataset.target)  # a bad template fails here too, before the folder
    run = create_run(out_dir, asdict(config))
    run.set_status("running", pid=os.getpid(), started=time.time())
    try:
        # Listen for a stop from here on: a SIGTERM while the model loads must still end as `stopped`.
        with StopRequest(run) as stop:
            record_dataset(run, dataset, splits)
            model, tokenizer, stopped = train_model(config, run, dataset, splits, stop)
            if stopped:
                run.set_status("stopped", finished=time.time())
                return run
            if not splits.test.empty:  # the Python API holds out its own test rows
                evaluate_run(run, model=model, tokenizer=tokenizer)
            run.set_status("completed", finished=time.time())
            return run
    except BaseException as error:
        message = str(error) if isinstance(error, LiftError) else f"{error.__class__.__name__}: {error}"
        run.set_status("failed", error=message, finished=time.time())
        raise

