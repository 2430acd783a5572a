"""Start's checks of the data and the template, run as each choice is made: the same verdict as at Start, and what
a refused choice would be."""

import numpy as np
import pandas as pd
import pytest
from helpers import two_gaussians

from lift_core.config import TrainConfig
from lift_core.data import load_splits, prepare_dataset
from lift_core.encoding import check_example_lengths
from lift_core.errors import LiftError
from lift_core.selection import check_prompt_lengths, check_table_choice

ITEMS = pd.DataFrame({"x": np.arange(300) % 13, "name": [f"item {i % 200}" for i in range(300)],
                      "y": ["a", "b", "c"] * 100})


def test_an_accepted_choice_is_the_prepared_dataset():
    choice = check_table_choice(ITEMS, "y", ["x"])
    assert choice.problem is None and choice.dataset.classes == ["a", "b", "c"]
    assert (choice.task, choice.n_classes, choice.n_features) == ("classification", 3, 1)
    assert check_table_choice(ITEMS, "x", ["name"], task="regression").task == "regression"


def test_a_refused_choice_still_says_what_it_would_be():
    choice = check_table_choice(ITEMS, "name")
    assert choice.dataset is None
    assert (choice.task, choice.n_classes, choice.n_features) == ("classification", 200, 2)
    assert choice.problem == ("The target 'name' has 200 classes, more than the limit of 50. If it is a number to "
                              "predict, set the task to regression; otherwise pick another target.")
    # Under its own wording, the check at Start refuses it the same way.
    with pytest.raises(LiftError, match="more than the limit of 50"):
        prepare_dataset(ITEMS, "name")


@pytest.mark.parametrize("target, features, task, expected_task, says", [
    ("name", ["x"], "regression", "regression", "numeric target"),
    ("y", [], None, "classification", "no feature columns"),
    ("nope", ["x"], None, None, "Column 'nope' is not in the table"),
])
def test_refused_choices(target, features, task, expected_task, says):
    choice = check_table_choice(ITEMS, target, features, task)
    assert choice.task == expected_task and says in choice.problem and "--" not in choice.problem


def test_a_target_without_values_has_no_task_to_tell():
    choice = check_table_choice(ITEMS.assign(y=np.nan), "y", ["x"])
    assert choice.task is None and choice.n_classes is None and "has no values" in choice.problem


def test_prompt_lengths_are_checked_on_every_row_as_at_start(tmp_path, model_cache):
    table = two_gaussians(40).assign(note=["short"] * 39 + ["word " * 400])
    dataset = prepare_dataset(table, "y")
    config = TrainConfig(data=str(tmp_path / "data.csv"), target="y", model="tiny", max_example_tokens=256)
    table.to_csv(config.data, index=False)
    with pytest.raises(LiftError) as at_choice:
        check_prompt_lengths(config, dataset)
    with pytest.raises(LiftError) as at_start:
        check_example_lengths(config, *load_splits(config))
    assert str(at_choice.value) == str(at_start.value)
    assert "1 of 40 rows make examples longer than 256 tokens" in str(at_choice.value)
    check_prompt_lengths(TrainConfig(model="tiny"), prepare_dataset(two_gaussians(40), "y"))  # short rows pass
