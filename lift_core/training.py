"""Orchestration of a training: the run folder created or resumed, the model finetuned, the best weights saved as
the adapter, the test split evaluated, and how it ended recorded.

The pieces live beside it: batches.py (batch order and padding), loss.py (the answer loss), validation.py (the
Validator), callbacks.py (clock, stop, checkpoint schedule, metrics rows), trainer.py (the Trainer subclass and
its arguments) and stopping.py (signals and the STOP file). Under `accelerate launch` every process runs this same
code; which of them writes the run is decided once, in `_train_and_evaluate`.
"""

import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from lift_core import data, models
from lift_core.batches import PadCollator, balance_groups
from lift_core.callbacks import TrainingClock, checkpoint_callback, metrics_callback, stop_callback
from lift_core.config import TrainConfig
from lift_core.distributed import inside_launch, on_any_process, training_processes
from lift_core.encoding import check_example_lengths, encode_examples
from lift_core.errors import LiftError
from lift_core.evaluation import evaluate_run, run_dataset
from lift_core.loss import checked_lower_cache
from lift_core.predict import Predictor
from lift_core.processes import process_identity
from lift_core.runs import DatasetInfo, Run, RunStateError, create_run
from lift_core.stopping import StopRequest, StoppedDuringEvaluation
from lift_core.trainer import build_trainer, training_arguments
from lift_core.validation import Validator


def run_training(config: TrainConfig, out_dir, splits_loaded=None) -> Run:
    """The whole job behind `lift_core train`: data, finetuning, test evaluation, all recorded in the run.

    `splits_loaded` lets the Python API pass in-memory data instead of a file.
    """
    dataset, splits = check_training_inputs(config, splits_loaded)
    # Under a `accelerate launch` of the user's own, the run records the processes it really trains on, so that a
    # resume plans the same steps.
    config.num_processes = training_processes().num_processes

    def create() -> None:
        record_dataset(create_run(out_dir, asdict(config)), dataset, splits)

    return _train_and_evaluate(config, Run(out_dir), dataset, splits, prepare=create)


def check_training_inputs(config: TrainConfig, splits_loaded=None) -> tuple[data.Dataset, data.Splits]:
    """The settings, the data, the template and the rows' lengths, checked before a run folder (or a process of a
    multi-process run) exists: the same --out can then be used again."""
    config.check()
    dataset, splits = splits_loaded or data.load_splits(config)
    config.template_for(dataset.features, dataset.target)
    check_example_lengths(config, dataset, splits)
    return dataset, splits


def record_dataset(run: Run, dataset: data.Dataset, splits: data.Splits) -> None:
    train_targets = splits.train[dataset.target]
    run.save_dataset(DatasetInfo(
        task=dataset.task, target=dataset.target, features=dataset.features, classes=dataset.classes,
        n_dropped=dataset.n_dropped, n_train=len(splits.train), n_val=len(splits.val), n_test=len(splits.test),
        train_target_mean=float(np.mean(train_targets)) if dataset.task == "regression" else None,
    ), splits)


def resume_training(run_dir) -> Run:
    """`lift_core train --resume`: an interrupted, failed or stopped run continues from its last checkpoint,
    on the same splits and in the same batch order, up to its planned final step; then it is evaluated."""
    run, config, status = resumable_run(run_dir)
    dataset, splits = run_dataset(run)
    trained = status.get("trained")
    checkpoint = None if trained else run.latest_checkpoint()
    training_processes().wait_for_everyone()  # all have read the run before the main process changes it

    def reopen() -> None:
        print(f"resuming run {run.path} {run.resume_point()}", flush=True)
        if status.get("state") != "queued":  # a resume from the command line, not queued by a launcher
            run.resume(process_identity(os.getpid()))
        if not trained:
            run.drop_metrics_after(run.checkpoint_state(checkpoint).get("step", 0))
        run.forget_evaluation()

    return _train_and_evaluate(config, run, dataset, splits, prepare=reopen, checkpoint=checkpoint)


def resumable_run(run_dir) -> tuple[Run, TrainConfig, dict]:
    """The run to resume, its settings and its status; refused with a message when it cannot be resumed."""
    run = Run(run_dir)
    if not run.exists():
        raise LiftError(f"'{run_dir}' holds no run to resume: give the --out folder of an earlier training.")
    status = run.reconcile()
    # The launcher queues a run it resumes for this very process (recording its pid a moment after starting it),
    # having checked it already; under `accelerate launch`, for the launching process, this one's parent.
    launcher_pid = os.getppid() if inside_launch() else os.getpid()
    launched_for_us = status.get("state") == "queued" and status.get("pid") in (None, launcher_pid)
    problem = None if launched_for_us else run.resume_problem()
    if problem:
        raise LiftError(problem)
    return run, run.config(), status


def _train_and_evaluate(config: TrainConfig, run: Run, dataset: data.Dataset, splits: data.Splits,
                        prepare: Callable[[], None], checkpoint: Path | None = None) -> Run:
    """Every training process comes here; `prepare()` is what the writing process does to the run first.

    The one place that decides who writes the run: the main process. It prepares, starts, records, saves the
    adapter, evaluates and ends the run; under `accelerate launch` the others train their share of each batch
    and write only their random states into each checkpoint, through the Trainer.
    """
    processes = training_processes()
    writer = run if processes.is_main_process else None
    if writer is not None:
        prepare()
    # The others write into the folder too (their checkpoint random states), and must not see an old STOP file.
    processes.wait_for_everyone()
    trained = run.status().get("trained", False)
    if writer is None:
        if not trained:
            with StopRequest(run) as stop:
                train_model(config, run, dataset, splits, stop, checkpoint)
        return run  # a crash here reaches the main process too, as an error in its next collective
    writer.start(process_identity(os.getpid()))
    try:
        _train_and_record(config, writer, dataset, splits, checkpoint, trained)
    except BaseException as error:
        message = str(error) if isinstance(error, LiftError) else f"{error.__class__.__name__}: {error}"
        with contextlib.suppress(RunStateError):  # a run another process owns keeps its state
            writer.fail(message)
        raise
    return writer


def _train_and_record(config: TrainConfig, run: Run, dataset: data.Dataset, splits: data.Splits,
                      checkpoint: Path | None, trained: bool) -> None:
    """The writing process's training and test evaluation, ending the run as completed or stopped."""
    # Listen for a stop from here on: a SIGTERM while the model loads must still end as `stopped`.
    with StopRequest(run) as stop:
        model = tokenizer = None
        if not trained:
            model, tokenizer, stopped = train_model(config, run, dataset, splits, stop, checkpoint, writer=run)
            if stopped:
                run.mark_stopped()
                return
            run.record(trained=True)
        if not splits.test.empty:  # the Python API holds out its own test rows
            try:
                evaluate_run(run, model=model, tokenizer=tokenizer, progress=stop.check)
            except StoppedDuringEvaluation:
                run.mark_stopped(note="Stopped during the test evaluation; the adapter is saved.")
                return
        run.complete()


def train_model(config: TrainConfig, run: Run, dataset: data.Dataset, splits: data.Splits, stop: StopRequest,
                checkpoint: Path | None = None, writer: Run | None = None):
    """Finetune (from `checkpoint`, if given); the writing process then saves the best evaluation's weights as the
    adapter. `writer` is the run on the process that writes it, None on the others (see _train_and_evaluate).

    Returns (peft model, tokenizer, stopped?).
    """
    from transformers import PrinterCallback, set_seed

    set_seed(config.seed)
    template = config.template_for(dataset.features, dataset.target)
    loaded = models.load_model(config.model, config.quant, config.trust_remote_code)
    model = models.add_lora(loaded, config.lora_settings())
    train_set, val_set = _encoded_examples(splits, template, loaded.tokenizer)
    collator = PadCollator(loaded.tokenizer.pad_token_id)
    lower_cache = None
    if config.lora_layers:
        first_batch = {key: value.to(model.device) for key, value in collator(train_set[:config.batch_size]).items()}
        lower_cache = checked_lower_cache(model, config.lora_layers, first_batch)
    validator = _validator(config, dataset, splits, model, loaded.tokenizer, template) if val_set else None
    saved = run.checkpoint_state(checkpoint)
    if validator is not None and saved.get("validator"):
        validator.load(checkpoint, saved["validator"])
    clock = TrainingClock(saved.get("elapsed_s", 0.0))
    processes = training_processes()
    total = config.planned_steps(len(train_set), processes.num_processes)
    writing = [metrics_callback(writer, validator, clock)] if writer is not None else []
    trainer = build_trainer(
        validator, balance_groups(splits.train, dataset.target, dataset.task), clock, lower_cache, writer,
        model=model,
        args=training_arguments(config, run, total, has_validation=bool(val_set)),
        train_dataset=train_set,
        eval_dataset=val_set or None,
        data_collator=collator,
        callbacks=[*writing, stop_callback(stop, validator), checkpoint_callback(stop, config.save_steps)],
    )
    # Our callback prints one line per log step; the default printer would repeat it as a dict.
    trainer.remove_callback(PrinterCallback)
    if writer is not None:
        writer.record(quantization=loaded.quantization, hardware=models.hardware_summary(),
                      processes=processes.num_processes)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    stopped = on_any_process(stop.requested)  # a signal may have reached another process only
    if writer is not None:
        _save_best_as_adapter(writer, model, validator)
    return model, loaded.tokenizer, stopped or stop.requested


def _encoded_examples(splits: data.Splits, template, tokenizer) -> tuple[list[dict], list[dict]]:
    """The training and the validation examples, encoded together, so that both sets mark the same decision token
    even if the few validation rows happen to lack a class."""
    examples = encode_examples(pd.concat([splits.train, splits.val]), template, tokenizer)
    for number, example in enumerate(examples):
        example["row"] = number  # what the lower-layer cache keys each row's states by
    return examples[:len(splits.train)], examples[len(splits.train):]


def _validator(config: TrainConfig, dataset: data.Dataset, splits: data.Splits, model, tokenizer,
               template) -> Validator:
    fallback = float(splits.train[dataset.target].mean()) if dataset.task == "regression" else None
    predictor = Predictor(model, tokenizer, template, dataset.task, dataset.classes, fallback,
                          config.validation_batch_size)
    return Validator(predictor, splits.val, dataset.target, config.early_stopping_patience, config.stop_when_perfect)


def _save_best_as_adapter(writer: Run, model, validator: Validator | None) -> None:
    """As in the LIFT paper, the adapter is the best evaluation's, not the last step's."""
    if validator is not None and validator.best_step is not None:
        validator.restore_best(model)
        writer.record(best_step=validator.best_step, best_validation={validator.key: validator.best_score})
    writer.save_adapter(model)
