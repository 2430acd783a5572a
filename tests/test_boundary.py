"""A trained model's adaptive maps against its exhaustive ones, on the paper's synthetic shapes."""

import numpy as np
import pytest
from helpers import train_tiny

from lift_core import synthetic
from lift_core.boundary import boundary_levels, model_boundary
from lift_core.predict import Predictor

SHAPES = ["moons", "circles", "blobs", "xor", "spiral", "nine_gaussians"]


@pytest.mark.slow  # trains the tiny model on each shape and maps it twice: about 10 s each
@pytest.mark.parametrize("kind", SHAPES)
def test_the_adaptive_map_agrees_with_the_exhaustive_one(kind, tmp_path):
    _, run = train_tiny(tmp_path, synthetic.make_classification(kind, n=300, noise=0.1, seed=0))
    predictor = Predictor.from_run(run)
    exact = model_boundary(run, exhaustive=True, predictor=predictor)
    adaptive = model_boundary(run, predictor=predictor)
    assert exact["scored"].all() and len(adaptive) == len(exact) == 3600
    probabilities = [column for column in exact.columns if column.startswith("p_")]
    difference = np.abs(adaptive[probabilities].to_numpy() - exact[probabilities].to_numpy()).max(axis=1)
    assert (adaptive["y_pred"] == exact["y_pred"]).mean() >= 0.99
    assert (difference <= 0.05).mean() >= 0.99
    answered = adaptive["scored"].to_numpy()
    assert difference[answered].max() < 1e-4  # an answered point is the model's own answer


@pytest.mark.slow  # trains the tiny model twice
def test_regression_and_sampled_maps_are_refined_levels_of_whole_grids(tmp_path):
    train, _ = synthetic.make_regression("linear", n=60, p=2, seed=0)
    _, regression = train_tiny(tmp_path / "regression", train)
    levels = list(boundary_levels(regression, resolution=20))
    assert all(len(level) == 400 and not level[["y_pred", "std"]].isna().any().any() for level in levels)
    assert levels[0]["scored"].sum() < levels[-1]["scored"].sum()

    _, classifier = train_tiny(tmp_path / "classifier", synthetic.make_classification("blobs", n=200, seed=0))
    sampled = model_boundary(classifier, resolution=20, samples=3)
    shares = sampled[[column for column in sampled.columns if column.startswith("p_")]].sum(axis=1)
    np.testing.assert_allclose(shares + sampled["invalid"], 1.0, atol=1e-9)
    assert sampled.loc[sampled["scored"], ["p_0", "p_1", "p_2"]].isin([0, 1 / 3, 2 / 3, 1]).all().all()
