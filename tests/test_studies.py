"""LIFT studies (lift_core/studies.py, study_results.py, the CLI's `study`): each kind's rows, labels and names,
the guards the paper's experiments kept, the study folder every run reads its tables from, and two studies of the
tiny model through the command line, one of them killed halfway and resumed."""

import os
import signal
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from helpers import ONE_THREAD_ENV, REPO_ROOT, TINY_FAST, lift_cli, put_in_state, two_gaussians, wait_for, write_table

from lift_core import data
from lift_core.cli import main
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.runs import Run, create_run
from lift_core.studies import (MIN_TRAIN_ROWS, StudySpec, Study, corrupt_labels, create_study, held_out_range, plan,
                               shuffled_names, subsample, wide_range)
from lift_core.study_results import results, summary, summary_text


# ---- tables -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Paths of the module's tables: "classes" (120 rows of two Gaussians), "named" (three named features, three
    classes), "curve" (a 1-D regression over [-3, 3]) and "plane" (a regression on two features)."""
    folder = tmp_path_factory.mktemp("tables")
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 150)
    named = pd.DataFrame({"age": rng.integers(20, 70, 90), "height": rng.normal(170, 10, 90).round(1),
                         "weight": rng.normal(70, 12, 90).round(1), "y": ["a", "b", "c"] * 30})
    frames = {"classes": two_gaussians(n=120), "named": named, "curve": pd.DataFrame({"x": x, "y": x**2}),
              "plane": pd.DataFrame({"x1": x, "x2": -x, "y": x**2})}
    return {name: write_table(frame, folder / f"{name}.csv") for name, frame in frames.items()}


def dataset_of(frame: pd.DataFrame) -> data.Dataset:
    return data.prepare_dataset(frame, "y")


def spec_of(kind, table, levels=(), *, seeds=1, noise_mode="random", setting="", baselines=(),
            **settings) -> StudySpec:
    """A study of the tiny model with TINY_FAST (and `settings`) on `table`'s target y."""
    base = asdict(TrainConfig(data=table, target="y", **{**TINY_FAST, **settings}))
    return StudySpec(kind, base, list(levels), seeds, noise_mode, setting, list(baselines))


def run_splits(study: Study, name: str) -> data.Splits:
    """The rows a run of the study trains, validates and is tested on, read as its training reads them."""
    return data.load_splits(study.run_config(name))[1]


def shared_splits(study: Study) -> data.Splits:
    """The study's data split as its base settings split it."""
    return data.load_splits(study.spec().base_config())[1]


def same_values(part: pd.DataFrame, reference: pd.DataFrame) -> None:
    """The same rows and values, whatever the columns are called."""
    pd.testing.assert_frame_equal(part.set_axis(reference.columns, axis=1), reference)


# ---- sample efficiency: subsample -----------------------------------------------------------------------------

def numbered(n: int, labels) -> pd.DataFrame:
    """n rows with a feature "row" that numbers them, and the labels given (repeated to n rows)."""
    return pd.DataFrame({"row": np.arange(n), "y": np.resize(np.asarray(labels), n)})


@pytest.mark.parametrize("n, fraction, kept", [(200, 0.25, 50), (30, 0.9, 27), (40, 0.05, MIN_TRAIN_ROWS)])
def test_subsample_keeps_the_share_of_rows_and_at_least_ten(n, fraction, kept):
    dataset = dataset_of(numbered(n, ["a", "b"]))
    sample = subsample(dataset.frame, fraction, dataset, np.random.default_rng(1))
    assert len(sample) == kept
    # Distinct rows of the table, in the table's order.
    assert sample["row"].is_monotonic_increasing and sample["row"].is_unique
    assert sample.merge(dataset.frame).shape == sample.shape


def test_subsample_of_the_whole_share_is_the_table():
    dataset = dataset_of(numbered(50, ["a", "b"]))
    pd.testing.assert_frame_equal(subsample(dataset.frame, 1.0, dataset, np.random.default_rng(0)), dataset.frame)


@pytest.mark.parametrize("counts", [{"a": 150, "b": 147, "rare": 3}, {"a": 298, "rare": 2}])
@pytest.mark.parametrize("seed", range(8))
def test_subsample_holds_every_class_even_a_rare_one(counts, seed):
    # 300 rows of which 2 or 3 are of a rare class: a plain draw of 15 or 12 rows misses it most of the time.
    frame = pd.DataFrame({"row": np.arange(300), "y": np.repeat(list(counts), list(counts.values()))})
    dataset = dataset_of(frame)
    fraction = 0.05 if len(counts) == 3 else 0.04
    sample = subsample(dataset.frame, fraction, dataset, np.random.default_rng(seed))
    assert len(sample) == round(fraction * 300)
    assert set(sample["y"]) == set(counts)


def test_subsample_refuses_a_share_that_keeps_fewer_rows_than_classes():
    dataset = dataset_of(numbered(60, [f"class {k:02}" for k in range(12)]))
    with pytest.raises(LiftError, match="keeps 10 training rows, fewer than the 12 classes"):
        subsample(dataset.frame, 0.1, dataset, np.random.default_rng(0))


def test_subsample_of_a_regression():
    frame = pd.DataFrame({"row": np.arange(100), "y": np.linspace(0, 1, 100)})
    dataset = dataset_of(frame)
    sample = subsample(dataset.frame, 0.3, dataset, np.random.default_rng(0))
    assert len(sample) == 30 and sample["row"].is_unique
    pd.testing.assert_frame_equal(sample, dataset.frame.iloc[sample["row"]].reset_index(drop=True))


# ---- label noise: corrupt_labels ------------------------------------------------------------------------------

@pytest.fixture
def three_classes() -> data.Dataset:
    """90 rows of the classes 1, 2 and 10: sorted as numbers (1, 2, 10), not as text (1, 10, 2)."""
    return dataset_of(pd.DataFrame({"x": np.arange(90.0), "y": [10, 1, 2] * 30}))


@pytest.mark.parametrize("mode", ["random", "systematic"])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.6])
def test_corrupt_labels_changes_exactly_the_share_and_nothing_else(three_classes, mode, rate):
    frame = three_classes.frame
    before = frame.copy()
    corrupted = corrupt_labels(frame, rate, mode, three_classes, np.random.default_rng(3))
    pd.testing.assert_frame_equal(frame, before)  # the frame given is left as it was
    assert (corrupted["y"] != frame["y"]).sum() == round(rate * len(frame))  # a changed label is never kept
    pd.testing.assert_series_equal(corrupted["x"], frame["x"])
    assert set(corrupted["y"]) <= set(three_classes.classes)


def test_random_noise_reaches_every_other_class(three_classes):
    frame = three_classes.frame
    corrupted = corrupt_labels(frame, 0.6, "random", three_classes, np.random.default_rng(0))
    changed = corrupted["y"] != frame["y"]
    for label in three_classes.classes:
        became = set(corrupted.loc[changed & (frame["y"] == label), "y"])
        assert became == set(three_classes.classes) - {label}


def test_systematic_noise_moves_each_class_to_the_next_in_sorted_order(three_classes):
    frame = three_classes.frame
    assert three_classes.classes == ["1", "2", "10"]
    corrupted = corrupt_labels(frame, 0.5, "systematic", three_classes, np.random.default_rng(0))
    changed = corrupted["y"] != frame["y"]
    assert changed.sum() == 45
    assert (frame.loc[changed, "y"].map({"1": "2", "2": "10", "10": "1"}) == corrupted.loc[changed, "y"]).all()


def test_corrupt_labels_refuses_a_regression():
    dataset = dataset_of(pd.DataFrame({"x": np.arange(20.0), "y": np.linspace(0, 1, 20)}))
    with pytest.raises(LiftError, match="needs a classification target"):
        corrupt_labels(dataset.frame, 0.1, "random", dataset, np.random.default_rng(0))


# ---- feature names, extrapolation ranges ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(10))
def test_shuffled_names_leave_no_name_in_place_and_every_value_in_its_column(seed):
    features = ["age", "height", "weight", "shoe size"]
    names = shuffled_names(features, np.random.default_rng(seed))
    assert list(names) == features and sorted(names.values()) == sorted(features)
    assert all(names[name] != name for name in features)
    frame = pd.DataFrame(np.arange(12.0).reshape(3, 4), columns=features)
    renamed = frame.rename(columns=names)
    assert list(renamed.columns) == [names[name] for name in features]
    np.testing.assert_array_equal(renamed.to_numpy(), frame.to_numpy())


def test_shuffled_names_refuse_a_single_feature():
    with pytest.raises(LiftError, match="at least two features"):
        shuffled_names(["x"], np.random.default_rng(0))


def test_held_out_range_and_the_wider_drawing_range():
    values = pd.Series([2.0, 4.0, 12.0])
    assert held_out_range(values, 0.0) == (2.0, 12.0)
    assert held_out_range(values, 0.1) == pytest.approx((3.0, 11.0))
    assert held_out_range(values, 0.25) == pytest.approx((4.5, 9.5))
    # The paper's (lb − (ub − lb)/2, ub + (ub − lb)/2).
    assert wide_range(2.0, 12.0) == pytest.approx((-3.0, 17.0))


# ---- the study folder: what each run reads --------------------------------------------------------------------

KINDS_AND_LEVELS = [
    ("sample-efficiency", "classes", [0.2, 1.0], {}),
    ("label-noise", "classes", [0.0, 0.2], {}),
    ("feature-names", "named", ["none", "shuffled", "correct"], {}),
    ("extrapolation", "curve", [0.0, 0.2], {}),
    ("vary-setting", "classes", ["1e-3", "5e-3"], {"setting": "lr"}),
]


@pytest.mark.parametrize("kind, table, levels, options", KINDS_AND_LEVELS)
def test_every_run_of_a_study_has_the_study_test_rows(tmp_path, tables, kind, table, levels, options):
    study = create_study(tmp_path / "study", spec_of(kind, tables[table], levels, seeds=2, **options))
    assert len(study.run_names()) == 2 * len(levels)
    shared = shared_splits(study)
    for name in study.run_names():
        splits = run_splits(study, name)
        same_values(splits.test, shared.test)
        if kind == "sample-efficiency":  # the validation rows shrink with the training rows, from the shared ones
            level = study.planned(name)["level"]
            assert len(splits.val) == max(1, round(level * len(shared.val)))
            assert len(splits.val.merge(shared.val)) == len(splits.val)
        elif kind != "extrapolation":  # which narrows the validation rows to its training range
            same_values(splits.val, shared.val)


def test_runs_train_seed_by_seed_each_seed_with_its_own_sample(tmp_path, tables):
    study = create_study(tmp_path / "study", spec_of("sample-efficiency", tables["classes"], [1, 0.5], seeds=2,
                                                     seed=3))
    assert study.run_names() == ["fraction-0.5-seed0", "fraction-1-seed0", "fraction-0.5-seed1", "fraction-1-seed1"]
    assert [study.planned(name)["seed"] for name in study.run_names()] == [3, 3, 4, 4]
    assert [study.run_config(name).seed for name in study.run_names()] == [3, 3, 4, 4]
    shared = shared_splits(study)
    halves = [run_splits(study, f"fraction-0.5-seed{index}").train for index in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == round(0.5 * len(shared.train))
    assert not halves[0].equals(halves[1])
    for index in (0, 1):
        pd.testing.assert_frame_equal(run_splits(study, f"fraction-1-seed{index}").train, shared.train)


def test_label_noise_corrupts_the_training_labels_only(tmp_path, tables):
    study = create_study(tmp_path / "study", spec_of("label-noise", tables["classes"], [0, 0.2]))
    shared = shared_splits(study)
    clean, noisy = (run_splits(study, name) for name in ("noise-random-0-seed0", "noise-random-0.2-seed0"))
    pd.testing.assert_frame_equal(clean.train, shared.train)
    pd.testing.assert_frame_equal(noisy.train.drop(columns="y"), shared.train.drop(columns="y"))
    assert (noisy.train["y"] != shared.train["y"]).sum() == round(0.2 * len(shared.train))
    for splits in (clean, noisy):
        pd.testing.assert_frame_equal(splits.val, shared.val)
        pd.testing.assert_frame_equal(splits.test, shared.test)


@pytest.mark.parametrize("template, named", [("lift", "names"), ("names", "names"), ("sentence", "sentence")])
def test_feature_names_levels(tmp_path, tables, template, named):
    study = create_study(tmp_path / "study", spec_of("feature-names", tables["named"], ["none", "shuffled", "correct"],
                                                     template=template))
    configs = {level: study.run_config(f"names-{level}-seed0") for level in ("none", "shuffled", "correct")}
    assert {level: config.template for level, config in configs.items()} == {
        "none": "lift", "shuffled": named, "correct": named}
    correct, shuffled = run_splits(study, "names-correct-seed0"), run_splits(study, "names-shuffled-seed0")
    features = ["age", "height", "weight"]
    renamed = list(shuffled.train.columns[:3])
    assert sorted(renamed) == features and all(new != old for new, old in zip(renamed, features))
    for part in ("train", "val", "test"):
        assert list(getattr(shuffled, part).columns) == [*renamed, "y"]
        same_values(getattr(shuffled, part), getattr(correct, part))
    assert data.load_splits(configs["shuffled"])[0].features == renamed


def test_extrapolation_trains_inside_the_held_out_range_and_tests_over_all_of_it(tmp_path, tables):
    study = create_study(tmp_path / "study", spec_of("extrapolation", tables["curve"], [0, 0.2]))
    every_x = pd.read_csv(tables["curve"])["x"]
    assert study.definition()["ranges"] == {"x": [every_x.min(), every_x.max()]}  # where its maps are drawn
    shared = shared_splits(study)
    pd.testing.assert_frame_equal(run_splits(study, "ends-0-seed0").train, shared.train)
    splits = run_splits(study, "ends-0.2-seed0")
    low, high = held_out_range(every_x, 0.2)
    for part in (splits.train, splits.val):
        assert not part.empty and part["x"].between(low, high).all()
    assert len(splits.train) < len(shared.train)
    pd.testing.assert_frame_equal(splits.test, shared.test)
    assert splits.test["x"].min() < low and splits.test["x"].max() > high


@pytest.mark.parametrize("table", ["classes", "plane"])
def test_extrapolation_needs_a_one_feature_regression(tables, table):
    with pytest.raises(LiftError, match="1-D regression"):
        plan(spec_of("extrapolation", tables[table], [0, 0.1]))


@pytest.mark.parametrize("setting, levels, values", [("lr", ["1e-3", "5e-3"], [0.001, 0.005]),
                                                     ("lora_r", ["16", "4"], [4, 16]),  # numbers run left to right
                                                     ("trim_zeros", ["true", "False"], [True, False])])
def test_vary_setting_sets_the_setting_of_each_run_as_its_type(tmp_path, tables, setting, levels, values):
    study = create_study(tmp_path / "study", spec_of("vary-setting", tables["classes"], levels, setting=setting))
    configs = [study.run_config(name) for name in study.run_names()]
    assert [getattr(config, setting) for config in configs] == values
    assert all(type(getattr(config, setting)) is type(values[0]) for config in configs)
    base = asdict(study.spec().base_config())
    for config in configs:  # nothing else differs, the data aside
        differing = {name for name, value in asdict(config).items() if value != base[name]}
        assert differing <= {setting, "data", "val_data", "test_data", "task"}


@pytest.mark.parametrize("setting", ["data", "test_size", "val_data", "features", ""])
def test_vary_setting_refuses_a_setting_that_is_the_data(tables, setting):
    with pytest.raises(LiftError, match="Choose the setting to vary"):
        spec_of("vary-setting", tables["classes"], ["0.1", "0.2"], setting=setting).check()


@pytest.mark.parametrize("kind, levels, options, message", [
    ("nope", [], {}, "Unknown study 'nope'"),
    ("sample-efficiency", [0.5], {"seeds": 0}, "number of seeds"),
    ("sample-efficiency", [0, 0.5], {}, r"share of the training rows in \(0, 1\]"),
    ("sample-efficiency", ["half"], {}, "not 'half'"),
    ("sample-efficiency", ["0.5", "0.5"], {}, "listed twice"),
    ("label-noise", [0.1, 1.0], {}, r"share of the labels in \[0, 1\)"),
    ("label-noise", [0.1], {"noise_mode": "sometimes"}, "Unknown label-noise mode"),
    ("feature-names", ["none", "wrong"], {}, "Unknown feature-names level 'wrong'"),
    ("extrapolation", [0.5], {}, r"share of the range in \[0, 0.5\)"),
    ("vary-setting", [], {"setting": "lr"}, "Give the levels"),
    ("vary-setting", ["fast"], {"setting": "lr"}, "'fast' is not a value of lr"),
])
def test_a_definition_that_cannot_make_a_study_is_refused(tables, kind, levels, options, message):
    with pytest.raises(LiftError, match=message):
        spec_of(kind, tables["classes"], levels, **options).check()


@pytest.mark.parametrize("kind, levels, setting", [("sample-efficiency", ["0.5", "0.50"], ""),
                                                   ("vary-setting", ["1e-3", "0.001"], "lr")])
def test_levels_equal_as_values_are_refused(tables, kind, levels, setting):
    with pytest.raises(LiftError, match="listed twice"):
        spec_of(kind, tables["classes"], levels, setting=setting).check()


@pytest.mark.parametrize("kind, table, levels, options, message", [
    ("sample-efficiency", "classes", [0], {}, "share of the training rows"),
    ("label-noise", "curve", [0.1], {}, "needs a classification target"),
    ("feature-names", "named", ["none"], {"template": "custom", "template_text": "{age}"}, "writes the names"),
    ("vary-setting", "classes", ["1e-3", "2"], {"setting": "lr"}, "learning rate must be between 0 and 1"),
    ("sample-efficiency", "classes", [1], {"max_example_tokens": 4}, "longer than 4 tokens"),
])
def test_a_refused_study_writes_nothing(tmp_path, tables, kind, table, levels, options, message):
    with pytest.raises(LiftError, match=message):
        create_study(tmp_path / "study", spec_of(kind, tables[table], levels, **options))
    assert not (tmp_path / "study").exists()


def test_a_study_needs_a_folder_of_its_own(tmp_path, tables):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(LiftError, match="already holds files"):
        create_study(folder, spec_of("sample-efficiency", tables["classes"], [1]))
    assert [path.name for path in folder.iterdir()] == ["notes.txt"]
    study = create_study(tmp_path / "empty", spec_of("sample-efficiency", tables["classes"], [1]))
    with pytest.raises(LiftError, match="already holds files"):
        create_study(study.path, spec_of("sample-efficiency", tables["classes"], [0.5]))


def test_a_study_without_validation_rows_makes_runs_that_load(tmp_path, tables):
    study = create_study(tmp_path / "study", spec_of("sample-efficiency", tables["classes"], [0.5, 1], val_size=0.0))
    for name in study.run_names():
        assert run_splits(study, name).val.empty


def test_an_extrapolation_level_with_no_validation_row_in_its_range_is_refused(tmp_path, tables):
    frame = pd.read_csv(tables["curve"])
    beyond = write_table(frame[frame["x"].abs() > 2.5], tmp_path / "val.csv")  # beyond what a 0.3 level trains on
    with pytest.raises(LiftError, match="no validation row inside it"):
        create_study(tmp_path / "study", spec_of("extrapolation", tables["curve"], [0.3], val_data=beyond))
    assert not (tmp_path / "study").exists()


def test_the_baselines_of_a_study_are_the_tasks_own(tmp_path, tables):
    with pytest.raises(LiftError, match="Unknown regression baseline.*logreg"):
        create_study(tmp_path / "curve", spec_of("extrapolation", tables["curve"], [0.0], baselines=["logreg"]))
    study = create_study(tmp_path / "classes", spec_of("label-noise", tables["classes"], [0.0],
                                                       baselines=["majority", "logreg"]))
    assert study.spec().baselines == ["majority", "logreg"]


def test_the_seed_is_not_a_setting_to_vary_it_is_the_seeds_of_every_study(tmp_path, tables):
    with pytest.raises(LiftError, match="setting to vary"):
        create_study(tmp_path / "study", spec_of("vary-setting", tables["classes"], ["1", "2"], setting="seed"))


# ---- separate validation table (data.load_splits) --------------------------------------------------------------

def test_a_separate_validation_table_is_used_as_it_is(tmp_path):
    table = write_table(two_gaussians(n=100), tmp_path / "data.csv")
    validation = two_gaussians(n=15, seed=5)
    config = TrainConfig(data=table, target="y", val_data=write_table(validation, tmp_path / "val.csv"))
    dataset, splits = data.load_splits(config)
    pd.testing.assert_frame_equal(splits.val, validation.astype({"y": str}))
    # The test share is still split off the data; the rest is all training.
    assert (len(splits.train), len(splits.test)) == (80, 20)
    every_row = pd.concat([splits.train, splits.test]).sort_values("x1", ignore_index=True)
    pd.testing.assert_frame_equal(every_row, dataset.frame.sort_values("x1", ignore_index=True))
    config.test_data = write_table(two_gaussians(n=10, seed=6), tmp_path / "test.csv")
    splits = data.load_splits(config)[1]
    pd.testing.assert_frame_equal(splits.train, dataset.frame)
    assert len(splits.test) == 10


def test_a_validation_table_with_a_class_the_training_lacks_is_refused(tmp_path):
    table = write_table(two_gaussians(n=100), tmp_path / "data.csv")
    validation = write_table(two_gaussians(n=10, labels=(0, 2)), tmp_path / "val.csv")
    with pytest.raises(LiftError, match="validation table's 'y' has classes the training table lacks: '2'"):
        data.load_splits(TrainConfig(data=table, target="y", val_data=validation))


# ---- scores (study_results), on runs finished by hand ---------------------------------------------------------

def finish_by_hand(study: Study, name: str, lift: float, logreg: float) -> None:
    """A run of the study recorded as completed with these test accuracies, as training and the baselines would
    record it: a stand-in for training."""
    run = create_run(study.run(name).path, asdict(study.run_config(name)))
    put_in_state(run, "completed")
    run.save_evaluation({"accuracy": lift, "n_test": 24}, pd.DataFrame({"y_true": [], "y_pred": []}))
    run.save_baselines(pd.DataFrame({"name": ["majority", "logreg"], "accuracy": [0.5, logreg]}))


@pytest.fixture
def scored_study(tmp_path, tables) -> Study:
    """Two levels and two seeds; every run finished by hand but the second seed of level 1."""
    study = create_study(tmp_path / "study", spec_of("sample-efficiency", tables["classes"], [0.5, 1], seeds=2))
    for name, lift, logreg in [("fraction-0.5-seed0", 0.7, 0.8), ("fraction-0.5-seed1", 0.9, 1.0),
                               ("fraction-1-seed0", 1.0, 0.95)]:
        finish_by_hand(study, name, lift, logreg)
    return study


def test_results_hold_each_run_lift_and_its_baselines(scored_study):
    table = results(scored_study)
    assert set(table["metric"]) == {"accuracy"}
    finished = table[table["run"] == "fraction-0.5-seed1"]
    assert finished[["method", "score"]].values.tolist() == [["LIFT", 0.9], ["majority", 0.5], ["logreg", 1.0]]
    assert set(finished["state"]) == {"completed"} and set(finished["seed"]) == {1}
    waiting = table[table["run"] == "fraction-1-seed1"]
    assert waiting[["method", "state"]].values.tolist() == [["LIFT", "waiting"]]
    assert waiting["score"].isna().all()


def test_summary_averages_the_seeds_of_each_level(scored_study):
    table = summary(results(scored_study)).set_index(["level", "method"])
    # The sample standard deviation of 0.7 and 0.9, and of 0.8 and 1.0.
    assert table.loc[("0.5", "LIFT")].tolist() == pytest.approx([0.8, 0.1 * 2 ** 0.5, 2])
    assert table.loc[("0.5", "logreg")].tolist() == pytest.approx([0.9, 0.1 * 2 ** 0.5, 2])
    assert table.loc[("1.0", "LIFT")].tolist() == pytest.approx([1.0, 0.0, 1])


def test_summary_text_lays_levels_down_and_methods_across(scored_study):
    lines = summary_text(scored_study).splitlines()
    assert lines[0] == "test accuracy (higher is better)"
    assert lines[1].split() == ["method", "LIFT", "majority", "logreg"]
    assert lines[2].strip() == "share of the training rows used"
    assert lines[3].split() == ["0.5", "0.800", "±", "0.141", "0.500", "±", "0.000", "0.900", "±", "0.141"]
    assert lines[4].split()[:4] == ["1.0", "1.000", "±", "0.000"]


def test_summary_text_of_a_study_with_no_finished_run(tmp_path, tables):
    study = create_study(tmp_path / "study", spec_of("sample-efficiency", tables["classes"], [1]))
    assert summary_text(study) == "No run of this study has finished yet."


# ---- the CLI's mistakes and resume, in this process --------------------------------------------------------------

def one_error_line(capsys, code: int) -> str:
    assert code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--kind", "sample-efficiency", "--noise", "0.1"], "--noise sets the levels of another study; the "
                                                        "sample-efficiency study takes --fractions"),
    (["--fractions", "0.5"], "study needs --kind"),
    (["--kind", "sample-efficiency", "--fractions", "0,0.5"], "share of the training rows"),
])
def test_study_mistakes_are_one_error_line(tmp_path, tables, capsys, args, message):
    out = tmp_path / "study"
    code = main(["study", *args, "--data", tables["classes"], "--target", "y", "--model", "tiny", "--out", str(out)])
    assert message in one_error_line(capsys, code)
    assert not out.exists()


def test_resume_of_a_folder_without_a_study(tmp_path, capsys):
    assert "holds no study" in one_error_line(capsys, main(["study", "--resume", str(tmp_path)]))


@pytest.mark.parametrize("extra", [["--lr", "0.01"], ["--kind", "label-noise"], ["--data", "other.csv"]])
def test_resume_takes_the_study_folder_alone(scored_study, capsys, extra):
    line = one_error_line(capsys, main(["study", "--resume", str(scored_study.path), *extra]))
    assert "give only its folder" in line


@pytest.mark.parametrize("extra", [["--seeds", "3"], ["--fractions", "0.1"], ["--preset", "Quick look"]])
def test_resume_refuses_the_study_flags_too(scored_study, capsys, extra):
    finish_by_hand(scored_study, "fraction-1-seed1", 1.0, 1.0)  # if the flag is ignored, nothing is trained
    line = one_error_line(capsys, main(["study", "--resume", str(scored_study.path), *extra]))
    assert "give only its folder" in line


def test_resume_of_a_study_another_process_runs_is_refused(scored_study, capsys):
    other = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                              "lock = open(sys.argv[1], 'w'); fcntl.flock(lock, fcntl.LOCK_EX)\n"
                              "print('held', flush=True); time.sleep(60)", str(scored_study.path / ".running.lock")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "held\n"
        line = one_error_line(capsys, main(["study", "--resume", str(scored_study.path)]))
    finally:
        other.kill()
        other.wait()
    assert "is already running in another process" in line


def file_times(run: Run) -> dict:
    return {str(path.relative_to(run.path)): path.stat().st_mtime_ns for path in run.path.rglob("*")}


def test_resume_of_a_finished_study_prints_its_scores_and_changes_no_run(scored_study, capsys):
    finish_by_hand(scored_study, "fraction-1-seed1", 0.8, 0.9)
    before = {run.name: (run.status(), file_times(run)) for run in scored_study.runs()}
    assert main(["study", "--resume", str(scored_study.path)]) == 0
    assert capsys.readouterr().out == summary_text(scored_study) + "\n"
    assert {run.name: (run.status(), file_times(run)) for run in scored_study.runs()} == before


# ---- whole studies of the tiny model, through the command line ---------------------------------------------------

TINY_FLAGS = [item for name, value in TINY_FAST.items() for item in (f"--{name.replace('_', '-')}", value)]


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def state_times(run: Run) -> dict[str, float]:
    return {entry["state"]: entry["time"] for entry in run.status()["history"]}


def score_table(stdout: str) -> dict[str, list[str]]:
    """The table `study` prints last, by its first word: the header ("method") and each level."""
    lines = stdout.splitlines()
    start = lines.index("test accuracy (higher is better)")
    return {line.split()[0]: line.split()[1:] for line in lines[start + 1:] if line.strip()}


@pytest.mark.slow  # two tiny trainings at once and their baselines, then a resume: ~30 s on one core
def test_a_two_level_study_end_to_end_then_resume_trains_nothing(tmp_path, tables, capsys):
    out = tmp_path / "study"
    # Two at once (--parallel 2: on a CPU they share its cores), each in a training process of its own.
    created = ok(lift_cli("study", "--kind", "sample-efficiency", "--fractions", "0.5,1", "--data", tables["classes"],
                          "--target", "y", *TINY_FLAGS, "--parallel", "2", "--out", out))
    assert f"study created: {out}, 2 runs" in created.stdout
    table = score_table(created.stdout)
    assert table["method"][:3] == ["LIFT", "majority", "logreg"] and len(table["method"]) > 3
    assert len(table["0.5"]) == len(table["1.0"]) == len(table["method"])
    study = Study(out)
    shared_test = pd.read_parquet(out / "tables" / "test.parquet")
    for run in study.runs():
        assert run.status()["state"] == "completed"
        assert run.eval_results()["n_test"] == len(shared_test)
        pd.testing.assert_frame_equal(run.split("test"), shared_test, check_dtype=False)
        assert {"majority", "logreg"} <= set(run.baselines()["name"])
    assert not results(study)["score"].isna().any()
    n_train = [run.dataset_info().n_train for run in study.runs()]
    assert n_train[0] == round(0.5 * n_train[1])
    training_pids = {run.status()["pid"] for run in study.runs()}
    assert len(training_pids) == 2 and os.getpid() not in training_pids
    # Both were training before either had finished.
    assert max(state_times(run)["running"] for run in study.runs()) < min(
        state_times(run)["completed"] for run in study.runs())

    before = {run.name: (run.status(), file_times(run)) for run in study.runs()}
    capsys.readouterr()
    assert main(["study", "--resume", str(out)]) == 0
    resumed = capsys.readouterr().out
    assert "run 1 of 2" not in resumed and "fitting the baselines" not in resumed
    assert score_table(resumed) == table
    assert {run.name: (run.status(), file_times(run)) for run in study.runs()} == before


@pytest.mark.slow  # a study's process killed in its second training, then resumed: ~40 s on one core
def test_a_study_killed_halfway_resumes_and_trains_only_what_was_left(tmp_path, tables, capsys, one_torch_thread):
    # The second run trains 4 epochs, with a checkpoint every 3 steps: long enough to be caught running after its
    # first checkpoint. One run at a time, on any machine: the first has finished when the second starts.
    out = tmp_path / "study"
    command = [sys.executable, "-m", "lift_core", "study", "--kind", "vary-setting", "--setting", "epochs",
               "--values", "1,4", "--data", tables["classes"], "--target", "y", *map(str, TINY_FLAGS),
               "--save-steps", "3", "--baselines", "majority,logreg", "--parallel", "1", "--out", str(out)]
    with open(tmp_path / "study.out", "w") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **ONE_THREAD_ENV}, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        second = Run(out / "runs" / "epochs-4-seed0")
        wait_for(lambda: second.status()["state"] == "running" and second.latest_checkpoint() is not None,
                 timeout=180, what=f"the second run to train; study output: {tmp_path / 'study.out'}")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    study = Study(out)
    first = study.run("epochs-1-seed0")
    assert first.status()["state"] == "completed" and first.baselines() is not None
    before = (first.status(), file_times(first))

    capsys.readouterr()
    assert main(["study", "--resume", str(out), "--parallel", "1"]) == 0
    resumed = capsys.readouterr().out
    assert "run 1 of 2" not in resumed and "run 2 of 2: epochs-4-seed0" in resumed
    assert (first.status(), file_times(first)) == before
    assert Run.resumed_history(second.status()) == ["queued", "running", "interrupted", "queued", "running",
                                                    "completed"]
    assert second.baselines() is not None and second.eval_results()["accuracy"] is not None
    assert set(score_table(resumed)) == {"method", "Epochs", "1.0", "4.0"}
