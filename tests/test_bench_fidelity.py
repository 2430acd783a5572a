"""The fidelity suite's own pieces: the mixed table it generates, the side-by-side comparison it prints, and the
full-default learning check (--check)."""

from helpers import two_gaussians

from bench.fidelity import check_failures, compare_markdown, mixed_table, separable_table
from lift_core.data import prepare_dataset


def test_the_mixed_table_has_text_numbers_and_gaps_and_trains_as_a_classification():
    frame = mixed_table(seed=0)
    features = frame.drop(columns="outcome")
    assert len(frame) == 400 and features.shape[1] == 7
    assert {"region", "plan"} == {name for name in features if features[name].dtype == object}
    missing = features.isna().mean().mean()
    assert 0.03 < missing < 0.07 and frame["outcome"].notna().all()
    dataset = prepare_dataset(frame, "outcome")
    assert dataset.task == "classification" and dataset.classes == ["no", "yes"]
    assert mixed_table(seed=0).equals(frame) and not mixed_table(seed=1).equals(frame)


def _row(config, score, wall_s, steps=300):
    return {"set": "moons", "seed": 0, "config": config, "accuracy": score, "rae": None, "best_baseline": "knn",
            "best_baseline_score": 1.0, "steps": steps, "wall_s": wall_s, "threads": 1, "estimate_s": 90}


def test_the_comparison_gives_each_setting_its_change_and_speed_up_against_the_previous_defaults():
    table = compare_markdown([_row("previous", 1.0, 300), _row("shipped", 0.99, 100, steps=125)])
    previous, shipped = table.splitlines()[2:]
    assert previous.startswith("| moons | 0 | previous | 1.000 |  |") and "| 300 | 300 |  |" in previous
    assert "| shipped | 0.990 | -0.010 |" in shipped and "| 125 | 100 | 3.00x | 90 |" in shipped


def test_the_default_check_trains_the_table_the_tests_train():
    assert separable_table().equals(two_gaussians(n=60, seed=3))


def test_the_default_check_passes_a_learned_run_and_names_each_miss():
    learned = {"accuracy": 1.0, "invalid_rate": 0.0, "majority_accuracy": 0.5}
    assert check_failures(learned, "completed", 220, 220) == []
    assert check_failures(None, "failed", None, 220) == ["the run ended failed, without a test score"]
    failures = check_failures({"accuracy": 0.5, "invalid_rate": 0.25, "majority_accuracy": 0.5}, "stopped", 40, 220)
    assert failures[:4] == ["the run ended stopped, not completed", "the run planned 40 steps, not the defaults' 220",
                            "test accuracy 0.500 is below 0.9", "25.0% of the answers were invalid"]
    assert "most common class" in failures[4] and len(failures) == 5
