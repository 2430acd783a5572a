"""The fidelity suite's own pieces: the mixed table it generates and the side-by-side comparison it prints."""

from bench.fidelity import compare_markdown, mixed_table
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
