"""Rows too long for the model are refused before training, with the longest row and what to do."""

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_FAST, two_gaussians, write_table

from lift_core import encoding, models
from lift_core.config import TrainConfig
from lift_core.data import load_splits
from lift_core.errors import LiftError
from lift_core.launcher import TrainingLauncher
from lift_core.training import run_training


def config_for(table: pd.DataFrame, folder, **settings) -> TrainConfig:
    return TrainConfig(data=write_table(table, folder / "data.csv"), target="y", **{**TINY_FAST, **settings})


def check(config: TrainConfig) -> None:
    encoding.check_example_lengths(config, *load_splits(config))


def with_long_text(rows: int, characters: int) -> pd.DataFrame:
    table = two_gaussians(rows)
    return table.assign(note=["short"] * (rows - 1) + ["word " * (characters // 5)])


def test_the_tiny_models_context_is_read_from_its_config(model_cache):
    assert models.context_length("tiny") == 1024


def test_a_huge_cell_is_refused_before_a_run_folder_exists(tmp_path, model_cache):
    config = config_for(with_long_text(40, 3_000_000), tmp_path)
    with pytest.raises(LiftError) as refused:
        run_training(config, tmp_path / "run")
    message = str(refused.value)
    assert "1 of 40 rows make examples longer than 1024 tokens (the context length of tiny)" in message
    assert "begins \"When we have x1=" in message and "x3=word word" in message
    assert "fewer feature columns" in message
    assert not (tmp_path / "run").exists()


def test_the_cap_of_the_setting_applies_where_it_is_below_the_context(tmp_path, model_cache):
    config = config_for(two_gaussians(40), tmp_path, max_example_tokens=12)
    with pytest.raises(LiftError, match=r"40 of 40 rows make examples longer than 12 tokens \(the longest-example "
                                        r"setting\); the longest has \d+ tokens"):
        check(config)
    check(config_for(two_gaussians(40), tmp_path, max_example_tokens=200))


def test_thousands_of_columns_are_refused(tmp_path, model_cache):
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(30, 3000)), columns=[f"c{i}" for i in range(3000)]).assign(y=[0, 1] * 15)
    with pytest.raises(LiftError, match="30 of 30 rows make examples longer than 1024 tokens"):
        check(config_for(table, tmp_path))


def test_short_rows_are_never_tokenized(tmp_path, model_cache, monkeypatch):
    def tokenize(*args, **kwargs):
        raise AssertionError("a table of short rows was tokenized")

    monkeypatch.setattr(encoding, "example_lengths", tokenize)
    check(config_for(two_gaussians(200), tmp_path))
    with pytest.raises(AssertionError, match="was tokenized"):
        check(config_for(with_long_text(40, 5000), tmp_path))


def test_the_launcher_refuses_long_rows_before_it_starts_a_process(tmp_path, model_cache):
    launcher = TrainingLauncher(tmp_path / "runs")
    with pytest.raises(LiftError, match="longer than 1024 tokens"):
        launcher.start(config_for(with_long_text(40, 20_000), tmp_path))
    assert [path.name for path in (tmp_path / "runs").iterdir() if path.is_dir()] == []
