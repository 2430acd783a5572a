"""How long a training run will take, said before it starts: from the moment it is launched to its test results.

The number of steps is exact (the same budget the trainer plans). The speed comes from, in order: the most recent
finished run of the same model and quantization on this machine; a timed calibration (calibration.py: a few real
steps on a few of the table's rows, once per model and machine); a rough guess for the built-in models. Tokens per
second are scaled to the new table's tokens per example.
"""

import math
import os
from dataclasses import dataclass

import numpy as np

from lift_core import calibration, models
from lift_core.calibration import Speed, run_speed
from lift_core.config import TrainConfig
from lift_core.data import load_splits
from lift_core.encoding import example_lengths
from lift_core.runs import FINISHED_STATES, list_runs

# Rows whose tokens are counted for the mean example length: enough for a stable mean, quick to tokenize.
TOKEN_SAMPLE_ROWS = 64
# Rough training throughputs on a CPU, for a model neither trained nor timed on this machine, validation passes
# included. SmolLM2-135M: about 1.2 s per step of 8 examples of 30 tokens on 2 cores (BENCHMARKS.md); the tiny
# random Llama: 300 steps of 4 rows of 30 tokens in 5 s, its time mostly the Trainer's own per step.
SMOLLM2_CPU_TOKENS_PER_S_PER_CORE = 110
TINY_CPU_TOKENS_PER_S = 7_000
# Seconds from the launch to the first step and after the last one (imports, loading the model, saving), when no
# run measured it: about 10 s on 2 cores for both built-in models (BENCHMARKS.md).
ROUGH_OVERHEAD_S = 10.0
# Test rows predicted per second by SmolLM2-135M on a CPU (label scoring plus one greedy answer, BENCHMARKS.md),
# when no past run of the model measured it here; an overestimate of the time for the tiny model.
EVAL_ROWS_PER_S = 15
UNKNOWN_SOURCE = "unknown: no run of this model on this machine yet"
# With LoRA on the top layers only, a step runs those layers alone, plus work every step has (the output layer on
# the answer columns, the optimizer, the Trainer's own); the layers below run once per row, forward only, the first
# time the row is seen. Measured on SmolLM2-135M (BENCHMARKS.md): 1.00 s a step with LoRA on all 30 layers, 0.54
# with 15, 0.37 with 10, 0.21 with 5; a forward pass alone is about 0.3 of a training step.
FIXED_STEP_SHARE = 0.05
FORWARD_SHARE = 0.3


@dataclass
class Estimate:
    steps: int
    seconds_per_step: float | None  # None: no measurement or guess for this model here
    seconds: float | None  # the whole run: starting, training, validation and the test-set evaluation
    source: str  # where seconds_per_step comes from
    eval_seconds: float = 0.0  # included in `seconds`
    stops_early: bool = False  # a classifier stops once its validation accuracy is perfect (stop_when_perfect)
    validation_seconds: float = 0.0  # included in `seconds`; a measured speed already counts it
    overhead_seconds: float = 0.0  # included in `seconds`: starting the process, loading the model, saving

    def summary(self) -> str:
        """One line for people: steps × seconds per step, and the whole run (where the speed comes from)."""
        if self.seconds is None:
            return f"Estimated: {self.steps} steps; duration {self.source}."
        parts = ([f"~{readable_duration(self.overhead_seconds)} to start and load the model"]
                 if self.overhead_seconds else [])
        if self.validation_seconds:
            parts.append(f"~{readable_duration(self.validation_seconds)} to score the validation rows")
        if self.eval_seconds:
            parts.append(f"~{readable_duration(self.eval_seconds)} to evaluate the test rows")
        includes = f"; includes {', '.join(parts)}" if parts else ""
        early = "; less if the validation accuracy is perfect sooner" if self.stops_early else ""
        return (f"Estimated: {self.steps} steps × {self.seconds_per_step:.3g} s/step, "
                f"≈ {readable_duration(self.seconds)} in all ({self.source}{includes}{early}).")


def readable_duration(seconds: float) -> str:
    """Seconds as a person reads a duration: 45 s, 2.5 min, 1.2 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_duration(config: TrainConfig, runs_dir, calibrate: bool = False, splits_loaded=None) -> Estimate:
    """Steps, seconds per step and total seconds of a run of `config`, judged from past runs in `runs_dir`; with
    `calibrate`, a model never run here is timed first (calibration.py) instead of guessed. `splits_loaded`: the
    config's (dataset, splits), when the caller has them already."""
    config.check()  # a zero batch size, say, would break the step count
    dataset, splits = splits_loaded or load_splits(config)
    steps = config.planned_steps(len(splits.train), config.num_processes)
    speed, measured = _speed(config, runs_dir, dataset, splits, calibrate)
    if speed is None:
        return Estimate(steps, None, None, UNKNOWN_SOURCE)
    template = config.template_for(dataset.features, dataset.target)
    sample = splits.train.sample(n=min(TOKEN_SAMPLE_ROWS, len(splits.train)), random_state=0)
    tokens_per_example = float(np.mean(example_lengths(sample, template, config.model, config.trust_remote_code)))
    # A step takes a batch on each process; tokens_per_s is that of all processes together.
    rows_per_step = config.batch_size * config.num_processes
    seconds_per_step = rows_per_step * tokens_per_example / speed.tokens_per_s
    eval_rows_per_s = speed.eval_rows_per_s or EVAL_ROWS_PER_S
    training_seconds, validation_seconds = steps * seconds_per_step, 0.0
    # A past run with the same LoRA layers measured the cache's effect and its validation time in its speed.
    if not measured:
        share = trained_layer_share(config)
        batches_seen = min(len(splits.train), steps * rows_per_step) / rows_per_step
        training_seconds = seconds_per_step * (steps * (FIXED_STEP_SHARE + (1 - FIXED_STEP_SHARE) * share)
                                               + batches_seen * FORWARD_SHARE * (1 - share))
        evaluations = steps // (config.eval_steps or math.ceil(steps / config.evaluations))
        validation_seconds = evaluations * len(splits.val) / eval_rows_per_s
    eval_seconds = len(splits.test) / eval_rows_per_s
    stops_early = bool(config.stop_when_perfect and dataset.task == "classification" and len(splits.val))
    total = speed.overhead_s + training_seconds + validation_seconds + eval_seconds
    return Estimate(steps, training_seconds / steps, total, speed.source, eval_seconds, stops_early,
                    validation_seconds, speed.overhead_s)


def needs_timing(config: TrainConfig, runs_dir) -> bool:
    """Whether a calibrating estimate would time the model first: no finished run of it here, nothing cached."""
    return _past_run_speed(config, runs_dir) is None and calibration.cached_speed(config) is None


def trained_layer_share(config: TrainConfig) -> float:
    """The share of the model's layers a step runs through: those with LoRA when lora_layers caches the rest."""
    found = models.model_architecture(config.model, config.trust_remote_code) if config.lora_layers else None
    return min(1.0, config.lora_layers / found[0].layers) if found else 1.0


def _speed(config: TrainConfig, runs_dir, dataset, splits, calibrate: bool) -> tuple[Speed | None, bool]:
    """The speed to estimate with, and whether a past run with these LoRA layers measured it (its step time then
    includes the layer cache's effect and the validation passes); (None, False) when there is none."""
    past = _past_run_speed(config, runs_dir)
    if past is not None:
        return past
    if calibrate:
        return calibration.measured_speed(config, dataset, splits), False
    cached = calibration.cached_speed(config)
    if cached is not None:
        return cached, False
    tokens_per_s = _prior_tokens_per_s(config.model)
    if tokens_per_s is None:
        return None, False
    return Speed(tokens_per_s, None, ROUGH_OVERHEAD_S,
                 f"rough guess: ~{tokens_per_s:,.0f} tokens/s for {config.model} on this CPU"), False


def _past_run_speed(config: TrainConfig, runs_dir) -> tuple[Speed, bool] | None:
    """The speed of the newest finished run of this model, quantization and number of LoRA layers on this hardware
    and number of processes."""
    quantization, hardware = models.resolve_quantization(config.quant), models.hardware_summary()
    for run in list_runs(runs_dir):  # newest first
        status = run.status()
        if (status.get("state") in FINISHED_STATES and run.config().model == config.model
                and status.get("quantization") == quantization and status.get("hardware") == hardware
                and status.get("processes", 1) == config.num_processes
                and run.config().lora_layers == config.lora_layers):
            speed = run_speed(run)
            if speed is not None:
                speed.source = f"measured: run {run.name} trained at {speed.tokens_per_s:,.0f} tokens/s on this machine"
                return speed, True
    return None


def _prior_tokens_per_s(model_name: str) -> float | None:
    if models.has_cuda():
        return None  # the guesses are for CPUs; a GPU is faster by an unknown factor
    if model_name == models.SMOLLM2_MODEL:
        return SMOLLM2_CPU_TOKENS_PER_S_PER_CORE * (os.cpu_count() or 1)
    if model_name == models.TINY_MODEL:
        return TINY_CPU_TOKENS_PER_S
    return None
