"""Finetune a causal LM with (Q)LoRA on serialized rows, writing everything into a run folder."""

import inspect
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lift_core import data, metrics, models, prompts
from lift_core.config import TrainConfig
from lift_core.distributed import inside_launch, on_any_process, training_processes
from lift_core.encoding import check_example_lengths, encode_examples
from lift_core.errors import LiftError
from lift_core.evaluation import evaluate_run, run_dataset
from lift_core.files import write_atomically
from lift_core.layer_cache import MATCH_TOLERANCE, LowerLayerCache
from lift_core.runs import (CHECKPOINT_STATE_FILE, CHECKPOINTS_DIR, STOP_FILE, Run, create_run, process_identity,
                            read_json, write_json_atomically)

# A checkpoint at least this often (besides one at each epoch's end), so a killed run loses minutes at most.
CHECKPOINT_EVERY_S = 300
BEST_WEIGHTS_FILE = "best_weights.safetensors"  # the validator's best weights so far, in a checkpoint


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
        tensors = {key: torch.tensor(value) for key, value in batch.items()}
        for key in ("decision_index", "row"):
            if all(key in example for example in examples):
                tensors[key] = torch.tensor([example[key] for example in examples])
        return tensors


class StratifiedSampler(torch.utils.data.Sampler):
    """Each epoch a new shuffle in which every class (or target quintile) is spread evenly through the order.

    Every batch then carries the classes in about their overall shares, instead of the runs of one class a
    plain shuffle deals out on small tables, and each epoch differs, seeded by `seed` and the epoch number.
    """

    def __init__(self, groups, seed: int):
        self.groups = np.asarray(groups)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        position = np.empty(len(self.groups))
        for group in np.unique(self.groups):
            members = np.flatnonzero(self.groups == group)
            # Members of a group sit at evenly spaced points of [0, 1), each jittered within its own slot.
            position[rng.permutation(members)] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
        return iter(np.argsort(position, kind="stable").tolist())


def balance_groups(frame, target: str, task: str) -> np.ndarray:
    """The groups StratifiedSampler spreads out: the class, or for regression the target's quintile."""
    values = frame[target]
    if task == "classification":
        return values.astype(str).to_numpy()
    ranks = values.rank(method="first").to_numpy()
    return np.floor((ranks - 1) * 5 / max(1, len(values))).astype(int)


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

    def check(self, done: int, total: int) -> None:
        """A progress callback that ends a test evaluation once a stop is requested."""
        if self.requested:
            raise StoppedDuringEvaluation()


class StoppedDuringEvaluation(Exception):
    pass


class TrainingClock:
    """Seconds spent training, summed over a run's resumes: what metrics.jsonl and the checkpoints record."""

    def __init__(self, before: float = 0.0):
        self.before = before
        self.started = time.time()

    def start(self) -> None:
        self.started = time.time()

    def elapsed(self) -> float:
        return self.before + time.time() - self.started


def _metrics_callback(run: Run, stop: StopRequest, validator: "Validator | None", clock: TrainingClock):
    from transformers import TrainerCallback

    class RunMetricsCallback(TrainerCallback):
        """Appends one metrics.jsonl row per log event and honours stop requests and early stopping."""

        def on_train_begin(self, args, state, control, **kwargs):
            clock.start()
            self.last_step = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero:
                return  # every process logs the same (gathered) values; one writes them
            logs = logs or {}
            elapsed = clock.elapsed()
            step = state.global_step
            if step == self.last_step and not any(key in logs for key in LOGGED_KEYS):
                return  # the closing summary at a step already logged: one row per step
            self.last_step = step
            per_step = elapsed / step if step else None
            run.append_metrics({
                "step": step,
                "total_steps": state.max_steps,
                "epoch": round(state.epoch or 0.0, 4),
                **{key: logs.get(key) for key in LOGGED_KEYS},
                "elapsed_s": round(elapsed, 3),
                "eta_s": round(per_step * (state.max_steps - step), 1) if per_step else None,
                "tokens_per_s": round(state.num_input_tokens_seen / elapsed, 1) if elapsed else None,
            })
            if "loss" in logs:
                decision = logs.get("decision_loss")
                print(f"step {step}/{state.max_steps} loss {logs['loss']:.4f}"
                      + (f" decision loss {decision:.4f}" if decision is not None else "")
                      + f" ({elapsed:.0f}s)", flush=True)

        def on_step_end(self, args, state, control, **kwargs):
            if on_any_process(stop.requested):  # a stop seen by any process stops them all at this step
                control.should_training_stop = True

        def on_evaluate(self, args, state, control, **kwargs):
            if validator and validator.exhausted:
                control.should_training_stop = True
                if state.is_world_process_zero:
                    print(f"Stopping early at step {state.global_step} of {state.max_steps}: "
                          f"{validator.stop_reason}.", flush=True)

    return RunMetricsCallback()


def _checkpoint_callback(stop: StopRequest, save_steps: int):
    from transformers import TrainerCallback

    class CheckpointSchedule(TrainerCallback):
        """Asks for a checkpoint at each epoch's end, every `save_steps` steps, at least every CHECKPOINT_EVERY_S
        seconds, and on a stop; never at the last step, after which the adapter itself is saved."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.last_save = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            due = (stop.requested or (save_steps and state.global_step % save_steps == 0)
                   or time.time() - self.last_save >= CHECKPOINT_EVERY_S)
            due = on_any_process(bool(due))  # the processes' clocks and stop flags differ: all save, or none
            if due and state.global_step < state.max_steps:
                control.should_save = True

        def on_epoch_end(self, args, state, control, **kwargs):
            if state.global_step < state.max_steps:
                control.should_save = True

        def on_save(self, args, state, control, **kwargs):
            self.last_save = time.time()

    return CheckpointSchedule()


# Trainer log keys that go into metrics.jsonl, besides the step counters and timings.
LOGGED_KEYS = ("loss", "decision_loss", "eval_loss", "eval_decision_loss", "val_accuracy", "val_rae",
               "learning_rate", "grad_norm")


class Validator:
    """Scores the model on the validation rows at each evaluation and keeps the best adapter weights.

    The score is accuracy by label scoring for classification, and the RAE of one greedy answer per row for
    regression: what the user is after, where the validation loss also counts the format tokens. As in the
    LIFT paper, the best evaluation is kept, not only the last.
    """

    def __init__(self, predictor, frame, target: str, patience: int = 0, perfect_patience: int = 0):
        self.predictor = predictor
        self.frame = frame
        self.truth = frame[target].to_numpy()
        self.patience = patience
        self.perfect_patience = perfect_patience if predictor.task == "classification" else 0
        self.best_score = None
        self.best_step = None
        self.best_weights = None
        self.stale = 0
        self.perfect = 0  # evaluations in a row at a perfect accuracy

    @property
    def key(self) -> str:
        return "val_accuracy" if self.predictor.task == "classification" else "val_rae"

    def score(self, model) -> float:
        model.eval()
        if self.predictor.task == "classification":
            proba = self.predictor.class_probabilities(self.frame)
            predicted = np.asarray(self.predictor.classes)[proba.argmax(axis=1)]
            return float(np.mean(predicted == np.asarray([data.label_text(value) for value in self.truth])))
        fallback = self.predictor.fallback_value
        answers = self.predictor.sample_answers(self.frame, k=1, temperature=0.0)
        values = [prompts.parse_number(texts[0]) for texts in answers]
        predicted = [fallback if value is None else value for value in values]
        return metrics.regression_metrics(self.truth.astype(float), predicted)["rae"] or 0.0

    def __call__(self, model, step: int, score: float | None = None) -> dict:
        score = self.score(model) if score is None else score
        sign = 1 if self.predictor.task == "classification" else -1  # accuracy up, RAE down
        improved = self.best_score is None or sign * score > sign * self.best_score
        # A tie keeps the later weights, trained longer for the same score, but does not count as progress.
        if improved or score == self.best_score:
            self.best_score, self.best_step = score, step
            self.best_weights = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        self.stale = 0 if improved else self.stale + 1
        self.perfect = self.perfect + 1 if score == 1.0 and self.predictor.task == "classification" else 0
        return {self.key: score}

    @property
    def exhausted(self) -> bool:
        return self.stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        """Why there is nothing left to learn, in words: flat for `patience` evaluations, or perfect for
        `perfect_patience` in a row; None while there is."""
        if self.perfect_patience > 0 and self.perfect >= self.perfect_patience:
            return f"the validation accuracy was perfect at {self.perfect} evaluations in a row"
        if self.patience > 0 and self.stale >= self.patience:
            return f"the validation score did not improve in {self.stale} evaluations"
        return None

    def state(self) -> dict:
        return {"best_score": self.best_score, "best_step": self.best_step, "stale": self.stale,
                "perfect": self.perfect}

    def save(self, folder: Path) -> None:
        """The best weights so far into a checkpoint folder (the scores go into its state file)."""
        if self.best_weights is not None:
            from safetensors.torch import save_file

            save_file({name: weights.contiguous() for name, weights in self.best_weights.items()},
                      folder / BEST_WEIGHTS_FILE)

    def load(self, folder: Path, state: dict) -> None:
        """Continue from a checkpoint: its best score, step, patience count and best weights."""
        self.best_score, self.best_step, self.stale = state["best_score"], state["best_step"], state["stale"]
        self.perfect = state.get("perfect", 0)
        if (folder / BEST_WEIGHTS_FILE).exists():
            from safetensors.torch import load_file

            self.best_weights = load_file(folder / BEST_WEIGHTS_FILE)

    def restore_best(self, model) -> None:
        if self.best_weights is None:
            return
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, weights in self.best_weights.items():
                parameters[name].copy_(weights)


def answer_loss(model, batch: dict, keeps_logits: bool = True, lower_cache: LowerLayerCache | None = None):
    """The causal LM loss over the answer tokens, as the model computes it, and each row's decision-token loss.

    Returns (loss, decision losses or None, model outputs). Only the columns whose next token is scored go
    through the output layer (vocabulary x hidden, a fifth of a small model's work per token): the answers,
    a few tokens of each row. With `lower_cache`, and the batch's `row` numbers, the frozen lower layers' output
    comes from the cache and only the trained layers run.
    """
    inputs = dict(batch)
    labels = inputs.pop("labels")
    decision = inputs.pop("decision_index", None)
    row_numbers = inputs.pop("row", None)
    targets = labels[:, 1:]
    columns = (targets != -100).any(0).nonzero().squeeze(-1)
    selection = {"logits_to_keep": columns} if keeps_logits else {}
    if lower_cache is not None and row_numbers is not None:
        states = lower_cache.lower_states(row_numbers.tolist(), inputs.pop("input_ids"), inputs["attention_mask"])
        with lower_cache.top_layers_only():
            outputs = model(inputs_embeds=states, **inputs, **selection, use_cache=False)
    else:
        outputs = model(**inputs, **selection, use_cache=False)
    logits = (outputs.logits if keeps_logits else outputs.logits[:, columns]).float()
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets[:, columns].flatten(), ignore_index=-100)
    if decision is None:
        return loss, None, outputs
    with torch.no_grad():
        rows = torch.arange(len(decision), device=logits.device)
        at = torch.searchsorted(columns, decision - 1)
        decision_losses = torch.nn.functional.cross_entropy(logits[rows, at], labels[rows, decision],
                                                            reduction="none")
    return loss, decision_losses, outputs


def keeps_logits(model) -> bool:
    """Whether the model takes a tensor of columns to compute logits for, as transformers' own causal LMs do;
    remote code may take only a count, so it gets the full logits."""
    base = models.base_model(model)
    return (type(base).__module__.startswith("transformers.")
            and "logits_to_keep" in inspect.signature(base.forward).parameters)


def checked_lower_cache(model, top_layers: int, batch: dict) -> LowerLayerCache | None:
    """The cache of the frozen lower layers' output, once a batch's loss through it equals a full forward pass's.

    An architecture whose forward pass treats `inputs_embeds` unlike the embedding's output (some scale it) fails
    the check: the run then trains without the cache, with a line in its log, at the same loss.
    """
    cache = LowerLayerCache.for_model(model, top_layers)
    if cache is None:
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits_by_columns = keeps_logits(model)
            full = answer_loss(model, {k: v for k, v in batch.items() if k != "row"}, logits_by_columns)[0].item()
            cached = answer_loss(model, batch, logits_by_columns, cache)[0].item()
    finally:
        model.train(was_training)
    if abs(cached - full) > MATCH_TOLERANCE * max(1.0, abs(full)):
        print(f"The frozen lower layers are not cached: through the cache a batch's loss is {cached:.6f}, "
              f"not {full:.6f}; each step runs every layer instead.", flush=True)
        return None
    return cache


def _lift_trainer(validator: Validator | None, sampler_groups, clock: TrainingClock,
                  lower_cache: LowerLayerCache | None, **trainer_arguments):
    from transformers import Trainer

    class LiftTrainer(Trainer):
        """The Trainer with the same loss, computed for less (answer_loss), and the decision loss logged beside it."""

        loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.decision_totals = {True: [0.0, 0], False: [0.0, 0]}  # keyed by model.training
            self.keeps_logits = keeps_logits(self.model)
            self.validation = {}

        def _get_train_sampler(self, train_dataset=None):
            return StratifiedSampler(sampler_groups, self.args.seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, decision_losses, outputs = answer_loss(model, inputs, self.keeps_logits, lower_cache)
            if decision_losses is not None:
                totals = self.decision_totals[model.training]
                totals[0] += decision_losses.sum().item()
                totals[1] += len(decision_losses)
            return (loss, outputs) if return_outputs else loss

        def _save_checkpoint(self, model, trial):
            """The Trainer's checkpoint, then the validator's best and the state file, written last to mark it
            complete; only then are older checkpoints removed, so a kill mid-save leaves the previous one."""
            super()._save_checkpoint(model, trial)
            # Every process saves its RNG state into the folder: only once all have is the checkpoint complete.
            self.accelerator.wait_for_everyone()
            if not self.is_world_process_zero():
                return
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            if validator is not None:
                validator.save(folder)
            write_json_atomically(folder / CHECKPOINT_STATE_FILE, {
                "step": self.state.global_step, "elapsed_s": clock.elapsed(),
                "validator": validator.state() if validator is not None else None,
            })
            for older in folder.parent.glob("checkpoint-*"):
                if older != folder:
                    shutil.rmtree(older, ignore_errors=True)

        def evaluate(self, *args, **kwargs):
            if validator is not None:
                score = None
                if self.args.world_size > 1:
                    from accelerate.utils import broadcast_object_list

                    # The main process scores, the others take its score: the best step and early stopping must
                    # agree everywhere.
                    score = validator.score(self.model) if self.is_world_process_zero() else None
                    score = broadcast_object_list([score])[0]
                self.validation = validator(self.model, self.state.global_step, score)
            return super().evaluate(*args, **kwargs)

        def log(self, logs, *args, **kwargs):
            evaluation = "eval_loss" in logs
            if evaluation or "loss" in logs:
                total, count = self.decision_totals[not evaluation]
                if self.args.world_size > 1:  # each process saw its own share of the rows
                    sums = torch.tensor([total, count], dtype=torch.float64, device=self.args.device)
                    total, count = self.accelerator.reduce(sums, "sum").tolist()
                if count:
                    logs[("eval_" if evaluation else "") + "decision_loss"] = total / count
                self.decision_totals[not evaluation] = [0.0, 0]
            if evaluation:
                logs.update(self.validation)
            super().log(logs, *args, **kwargs)

    return LiftTrainer(**trainer_arguments)


def _training_arguments(config: TrainConfig, run: Run, total: int, has_validation: bool):
    from transformers import TrainingArguments

    logging_steps = config.logging_steps or min(10, max(1, total // 50))
    eval_steps = config.eval_steps or max(1, math.ceil(total / config.evaluations))
    return TrainingArguments(
        output_dir=str(run.path / CHECKPOINTS_DIR),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.lr,
        max_steps=total,
        lr_scheduler_type="linear",
        warmup_steps=math.ceil(config.warmup * total),  # any warm-up is at least one step
        logging_steps=logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=eval_steps,
        save_strategy="no",  # CheckpointSchedule decides when
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=models.compute_dtype() == torch.bfloat16,
        report_to="none",
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_pin_memory=False,
        # Every LoRA weight is used each step. The Trainer's default for a peft model (True) walks the autograd
        # graph every step under DDP, and with gradient checkpointing (QLoRA on a GPU) fails outright.
        ddp_find_unused_parameters=False,
    )


def train_model(config: TrainConfig, run: Run, dataset: data.Dataset, splits: data.Splits, stop: StopRequest,
                checkpoint: Path | None = None):
    """Finetune (from `checkpoint`, if given), keep the best evaluation's weights, and save the adapter.

    Returns (peft model, tokenizer, stopped?).
    """
    from transformers import PrinterCallback, set_seed

    from lift_core.predict import Predictor

    set_seed(config.seed)
    template = config.template_for(dataset.features, dataset.target)
    loaded = models.load_model(config.model, config.quant, config.trust_remote_code)
    model = models.add_lora(loaded, config.lora_settings())
    tokenizer = loaded.tokenizer
    # Encoded together, so that both sets mark the same decision token even if the few validation rows
    # happen to lack a class.
    examples = encode_examples(pd.concat([splits.train, splits.val]), template, tokenizer)
    for number, example in enumerate(examples):
        example["row"] = number  # what the lower-layer cache keys each row's states by
    train_set, val_set = examples[:len(splits.train)], examples[len(splits.train):]
    collator = PadCollator(tokenizer.pad_token_id)
    lower_cache = None
    if config.lora_layers:
        first_batch = {key: value.to(model.device) for key, value in collator(train_set[:config.batch_size]).items()}
        lower_cache = checked_lower_cache(model, config.lora_layers, first_batch)
    validator = None
    if val_set:
        fallback = float(splits.train[dataset.target].mean()) if dataset.task == "regression" else None
        predictor = Predictor(model, tokenizer, template, dataset.task, dataset.classes, fallback,
                              config.validation_batch_size)
        validator = Validator(predictor, splits.val, dataset.target, config.early_stopping_patience,
                              config.stop_when_perfect)
    saved = read_json(checkpoint / CHECKPOINT_STATE_FILE) if checkpoint else {}
    if validator is not None and saved.get("validator"):
        validator.load(checkpoint, saved["validator"])
    clock = TrainingClock(saved.get("elapsed_s", 0.0))
    processes = training_processes()
    total = config.planned_steps(len(train_set), processes.num_processes)
    trainer = _lift_trainer(
        validator, balance_groups(splits.train, dataset.target, dataset.task), clock, lower_cache,
        model=model,
        args=_training_arguments(config, run, total, has_validation=bool(val_set)),
        train_dataset=train_set,
        eval_dataset=val_set or None,
        data_collator=collator,
        callbacks=[_metrics_callback(run, stop, validator, clock), _checkpoint_callback(stop, config.save_steps)],
    )
    # Our callback prints one line per log step; the default printer would repeat it as a dict.
    trainer.remove_callback(PrinterCallback)
    if processes.is_main_process:
        run.set_status("running", quantization=loaded.quantization, hardware=models.hardware_summary(),
                       processes=processes.num_processes)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    stopped = on_any_process(stop.requested)  # a signal may have reached another process only
    if not processes.is_main_process:
        return model, tokenizer, stopped
    if validator is not None and validator.best_step is not None:
        validator.restore_best(model)
        run.set_status("running", best_step=validator.best_step, best_validation={validator.key: validator.best_score})
    # Written whole or not at all: a kill mid-save leaves no adapter folder rather than a truncated one.
    write_atomically(run.adapter_dir, model.save_pretrained, replace_folder=True)
    return model, tokenizer, stopped or stop.requested


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


def check_training_inputs(config: TrainConfig, splits_loaded=None) -> tuple[data.Dataset, data.Splits]:
    """The settings, the data, the template and the rows' lengths, checked before a run folder (or a process of a
    multi-process run) exists: the same --out can then be used again."""
    config.check()
    dataset, splits = splits_loaded or data.load_splits(config)
    config.template_for(dataset.features, dataset.target)
    check_example_lengths(config, dataset, splits)
    return dataset, splits


def run_training(config: TrainConfig, out_dir, splits_loaded=None) -> Run:
    """The whole job behind `lift_core train`: data, finetuning, test evaluation, all recorded in the run.

    `splits_loaded` lets the Python API pass in-memory data instead of a file.
    """
    dataset, splits = check_training_inputs(config, splits_loaded)
    processes = training_processes()
    # Under a `accelerate launch` of the user's own, the run records the processes it really trains on, so that a
    # resume plans the same steps.
    config.num_processes = processes.num_processes
    if processes.is_main_process:
        record_dataset(create_run(out_dir, asdict(config)), dataset, splits)
    processes.wait_for_everyone()  # the others write into the folder too (their checkpoint RNG states)
    return _train_and_evaluate(config, Run(out_dir), dataset, splits)


def resumable_run(run_dir) -> tuple[Run, TrainConfig, dict]:
    """The run to resume, its settings and its status; refused with a message when it cannot be resumed."""
    run = Run(run_dir)
    if not run.file("config.json").exists():
        raise LiftError(f"'{run_dir}' holds no run to resume: give the --out folder of an earlier training.")
    status = run.status()
    # The launcher marks a run it resumes as queued for this very process, having checked it already; under
    # `accelerate launch`, for the launching process, this one's parent.
    launcher_pid = os.getppid() if inside_launch() else os.getpid()
    launched_for_us = status.get("state") == "queued" and status.get("pid") == launcher_pid
    problem = None if launched_for_us else run.resume_problem()
    if problem:
        raise LiftError(problem)
    return run, TrainConfig.of_run(run.config()), status


def resume_training(run_dir) -> Run:
    """`lift_core train --resume`: an interrupted, failed or stopped run continues from its last checkpoint,
    on the same splits and in the same batch order, up to its planned final step; then it is evaluated."""
    run, config, status = resumable_run(run_dir)
    dataset, splits = run_dataset(run)
    trained = status.get("trained")
    checkpoint = None if trained else run.latest_checkpoint()
    processes = training_processes()
    processes.wait_for_everyone()  # all have read the run before the main process changes it
    if processes.is_main_process:
        print(f"resuming run {run.path} {run.resume_point()}", flush=True)
        run.file(STOP_FILE).unlink(missing_ok=True)
        if not trained:
            run.drop_metrics_after(read_json(checkpoint / CHECKPOINT_STATE_FILE)["step"] if checkpoint else 0)
        for stale in ("eval.json", "predictions.csv"):  # they describe the adapter the resumed run replaces
            run.file(stale).unlink(missing_ok=True)
        # This process's identity at once: with the dead one's, the next status read would call the run
        # interrupted.
        run.set_status("running", **process_identity(os.getpid()), error=None, exit_code=None, finished=None,
                       note=None, resumed=time.time())
    processes.wait_for_everyone()  # else another process could still see the old STOP file
    return _train_and_evaluate(config, run, dataset, splits, checkpoint)


def _train_and_evaluate(config: TrainConfig, run: Run, dataset: data.Dataset, splits: data.Splits,
                        checkpoint: Path | None = None) -> Run:
    # Read without Run.status(), which may write: only the main process writes the run's status.
    trained = (read_json(run.file("status.json")) or {}).get("trained", False)
    main = training_processes().is_main_process
    if main:
        run.set_status("running", **process_identity(os.getpid()), started=time.time())
    try:
        # Listen for a stop from here on: a SIGTERM while the model loads must still end as `stopped`.
        with StopRequest(run) as stop:
            model = tokenizer = None
            if not trained:
                model, tokenizer, stopped = train_model(config, run, dataset, splits, stop, checkpoint)
                if stopped and main:
                    run.set_status("stopped", finished=time.time())
                    return run
                if main:
                    run.set_status("running", trained=True)
            if not main:
                return run  # the main process saved the adapter; it alone evaluates and records the end
            if not splits.test.empty:  # the Python API holds out its own test rows
                try:
                    evaluate_run(run, model=model, tokenizer=tokenizer, progress=stop.check)
                except StoppedDuringEvaluation:
                    run.set_status("stopped", finished=time.time(),
                                   note="Stopped during the test evaluation; the adapter is saved.")
                    return run
            run.set_status("completed", finished=time.time())
            return run
    except BaseException as error:
        message = str(error) if isinstance(error, LiftError) else f"{error.__class__.__name__}: {error}"
        if main:  # a crash elsewhere reaches it too, as an error in its next collective
            run.set_status("failed", error=message, finished=time.time())
        raise
