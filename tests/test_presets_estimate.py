"""Training presets and the duration estimate shown before a run starts."""

import json
import re
from dataclasses import asdict

import pandas as pd
import pytest

from lift_core import calibration, estimate, models
from lift_core.config import PREVIOUS_DEFAULTS, TrainConfig
from lift_core.data import load_splits
from lift_core.errors import LiftError
from lift_core.estimate import EVAL_ROWS_PER_S, TINY_CPU_TOKENS_PER_S, estimate_duration
from lift_core.presets import PRESET_FIELDS, PRESETS, apply_preset
from lift_core.runs import create_run
from lift_core.encoding import encode_examples

from helpers import put_in_state


# ---------- presets ----------

@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_training_config(name):
    TrainConfig(**PRESETS[name].overrides).check()
    assert PRESETS[name].description


@pytest.mark.parametrize("name", list(PRESETS))
def test_no_preset_help_quotes_a_models_timing(name):
    # Whatever model is chosen, the help stays true: durations are the estimate's, which knows the model.
    description = PRESETS[name].description
    assert not [model for model in (*models.LISTED_MODELS, *models.ALIASES) if model.lower() in description.lower()]
    assert not re.search(r"\b(seconds?|minutes?|hours?)\b", description), description


def test_apply_preset_sets_every_preset_field_with_the_defaults_filled_in():
    defaults = TrainConfig()
    assert apply_preset("Recommended") == {field: getattr(defaults, field) for field in PRESET_FIELDS}
    quick = apply_preset("Quick look")
    assert quick["max_steps"] == 80 and quick["lr"] == defaults.lr and quick["lora_r"] == defaults.lora_r
    paper = apply_preset("Paper")
    assert paper == {"epochs": 10.0, "max_steps": 0, "batch_size": 4, "lr": 1e-4, "lora_r": 16, "lora_alpha": 16,
                     "lora_dropout": 0.0, "warmup": 0.002, "lora_layers": defaults.lora_layers,
                     "trim_zeros": defaults.trim_zeros, "evaluations": defaults.evaluations,
                     "stop_when_perfect": defaults.stop_when_perfect}
    assert apply_preset("Previous defaults") == apply_preset("Recommended") | PREVIOUS_DEFAULTS
    with pytest.raises(LiftError, match="Unknown preset"):
        apply_preset("Fastest")


# ---------- the duration estimate ----------

@pytest.fixture
def tiny_config(tmp_path):
    table = tmp_path / "table.csv"
    pd.DataFrame({"x1": range(100), "x2": range(100, 200), "y": ["a", "b"] * 50}).to_csv(table, index=False)
    return TrainConfig(data=str(table), target="y", model="tiny", quant="none", max_steps=50)


def tokens_per_example(config: TrainConfig) -> float:
    dataset, splits = load_splits(config)
    template = config.template_for(dataset.features, dataset.target)
    examples = encode_examples(splits.train, template, models.load_tokenizer(config.model))
    return sum(len(example["input_ids"]) for example in examples) / len(examples)


def finished_run(path, config: TrainConfig, tokens_per_s: float, hardware: str | None = None,
                 evaluation: dict | None = None):
    """A run folder as a finished training leaves it: config, status with hardware, metrics, maybe eval.json."""
    run = create_run(path, asdict(config))
    put_in_state(run, "completed", quantization="none", hardware=hardware or models.hardware_summary())
    run.append_metrics({"step": 1, "loss": 2.0, "tokens_per_s": tokens_per_s / 2})
    run.append_metrics({"step": 50, "loss": 1.0, "tokens_per_s": tokens_per_s})
    run.append_metrics({"step": 50, "train_runtime": 3.0})  # the last row need not carry a throughput
    if evaluation:
        (run.path / "eval.json").write_text(json.dumps(evaluation))
    return run


@pytest.fixture
def no_timings(monkeypatch, tmp_path):
    """No model timed on this machine yet: the calibrations another test cached stay out of this one."""
    monkeypatch.setattr(calibration, "speeds_path", lambda: tmp_path / "speeds.json")


@pytest.fixture
def cpu(monkeypatch):
    # The built-in guesses are for CPUs: pretend there is no GPU, whatever the test machine has.
    monkeypatch.setattr(estimate.models, "has_cuda", lambda: False)


def test_the_estimate_scales_the_newest_matching_runs_throughput_to_the_new_tables_tokens(tmp_path, tiny_config):
    runs_dir = tmp_path / "runs"
    finished_run(runs_dir / "older", tiny_config, tokens_per_s=50.0)
    newest = finished_run(runs_dir / "newest", tiny_config, tokens_per_s=100.0,
                          evaluation={"n_test": 20, "eval_seconds": 4.0})
    finished_run(runs_dir / "elsewhere", tiny_config, tokens_per_s=1e6, hardware="GPU: another machine")
    running = create_run(runs_dir / "running", asdict(tiny_config))  # not finished: no throughput to trust
    running.append_metrics({"step": 1, "tokens_per_s": 1e6})

    result = estimate_duration(tiny_config, runs_dir)
    assert result.steps == 50  # min(20 epochs of 18 steps, max_steps 50)
    # Tokens are counted on a sample of the training rows, hence near, not equal.
    per_step = tiny_config.batch_size * tokens_per_example(tiny_config) / 100
    assert result.seconds_per_step == pytest.approx(per_step, rel=0.05)
    assert result.eval_seconds == pytest.approx(20 / 5.0)  # 20 test rows at the newest run's 5 rows/s
    assert result.seconds == pytest.approx(50 * result.seconds_per_step + result.eval_seconds)
    assert newest.name in result.source and "measured" in result.source
    summary = result.summary()
    assert summary.startswith("Estimated: 50 steps × ") and "s/step, ≈ " in summary and "evaluate" in summary


def test_on_two_processes_an_epoch_takes_half_the_steps_and_only_two_process_runs_measure_the_speed(
        tmp_path, tiny_config):
    runs_dir = tmp_path / "runs"
    one_process = finished_run(runs_dir / "one", tiny_config, tokens_per_s=100.0)
    two_processes_config = TrainConfig(**{**asdict(tiny_config), "num_processes": 2, "max_steps": 0, "epochs": 2})
    result = estimate_duration(two_processes_config, runs_dir)
    assert result.steps == 2 * 9  # 70 training rows: 9 steps of 2 processes x 4 rows per epoch
    assert one_process.name not in result.source  # a 1-process run says nothing of 2 processes' speed

    two = finished_run(runs_dir / "two", two_processes_config, tokens_per_s=100.0)
    two.record(processes=2)
    result = estimate_duration(two_processes_config, runs_dir)
    assert two.name in result.source
    # 100 tokens/s for both processes together, each taking a batch per step.
    per_step = 2 * tiny_config.batch_size * tokens_per_example(tiny_config) / 100
    assert result.seconds_per_step == pytest.approx(per_step, rel=0.05)


def test_without_a_past_run_or_a_timing_the_estimate_is_a_stated_rough_guess(tmp_path, tiny_config, cpu,
                                                                              no_timings):
    finished_run(tmp_path / "runs" / "smollm2", TrainConfig(model="smollm2-135m"), tokens_per_s=10.0)  # another model
    result = estimate_duration(tiny_config, tmp_path / "runs")
    per_step = tiny_config.batch_size * tokens_per_example(tiny_config) / TINY_CPU_TOKENS_PER_S
    assert result.seconds_per_step == pytest.approx(per_step, rel=0.05)
    assert result.eval_seconds == pytest.approx(20 / EVAL_ROWS_PER_S)  # 20% of 100 rows are test rows
    # 6 evaluations a run: every 9 of the 50 steps, 5 in all, each scoring the 8 validation rows (10% of 80)
    assert result.validation_seconds == pytest.approx(5 * 8 / EVAL_ROWS_PER_S)
    assert result.overhead_seconds == estimate.ROUGH_OVERHEAD_S
    assert result.seconds == pytest.approx(
        result.overhead_seconds + 50 * result.seconds_per_step + result.validation_seconds + result.eval_seconds)
    assert "rough guess" in result.source and "to score the validation rows" in result.summary()


def test_an_unknown_model_without_a_past_run_has_no_duration(tmp_path, tiny_config, cpu, no_timings):
    config = TrainConfig(**{**asdict(tiny_config), "model": "some-org/some-model"})
    result = estimate_duration(config, tmp_path / "runs")
    assert result.steps == 50 and result.seconds is None and result.seconds_per_step is None
    assert result.source == "unknown: no run of this model on this machine yet"
    assert result.summary() == "Estimated: 50 steps; duration unknown: no run of this model on this machine yet."


def test_the_estimate_refuses_invalid_settings(tmp_path, tiny_config):
    with pytest.raises(LiftError, match="batch size"):
        estimate_duration(TrainConfig(**{**asdict(tiny_config), "batch_size": 0}), tmp_path)
