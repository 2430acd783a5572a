import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lift_core.errors import LiftError
from lift_core.synthetic import (
    CLASSIFICATION_KINDS,
    REGRESSION_KINDS,
    make_classification,
    make_regression,
    regression_function,
)

EXPECTED_LABELS = {
    "nine_gaussians": set(range(9)),
    "blobs": {0, 1, 2},
    "circles": {0, 1},
    "moons": {0, 1},
    "two_circles": {0, 1},
    "xor": {0, 1},
    "spiral": {0, 1},
}


# --- classification --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CLASSIFICATION_KINDS)
def test_classification_shape_and_labels(kind):
    frame = make_classification(kind, n=401, seed=0)
    assert list(frame.columns) == ["x1", "x2", "y"]
    assert len(frame) == 401
    assert frame["y"].dtype == np.int64
    assert set(frame["y"]) == EXPECTED_LABELS[kind]
    counts = frame["y"].value_counts()
    if kind == "xor":  # uniform points: balanced only on average
        assert counts.min() > 0.45 * 401
    else:
        assert counts.max() - counts.min() <= 1
    assert np.isfinite(frame[["x1", "x2"]].to_numpy()).all()


@pytest.mark.parametrize("kind", CLASSIFICATION_KINDS)
def test_classification_is_deterministic_for_a_seed(kind):
    pd.testing.assert_frame_equal(make_classification(kind, seed=3), make_classification(kind, seed=3))
    assert not make_classification(kind, seed=3).equals(make_classification(kind, seed=4))


def test_rows_are_shuffled():
    two_circles = make_classification("two_circles", n=200)
    assert 20 < (two_circles["x1"].iloc[:100] > 1.5).sum() < 80  # both ring pairs among the first rows
    nine = make_classification("nine_gaussians", n=90)
    assert nine["y"].tolist() != [i % 9 for i in range(90)]


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(CLASSIFICATION_KINDS),
    n=st.integers(2, 50),
    noise=st.floats(0, 2),
    seed=st.integers(0, 2**31),
)
def test_classification_always_has_exactly_n_rows(kind, n, noise, seed):
    frame = make_classification(kind, n=n, noise=noise, seed=seed)
    assert len(frame) == n
    assert np.isfinite(frame[["x1", "x2"]].to_numpy()).all()


def test_nine_gaussians_sit_on_a_3x3_grid_one_class_per_cluster():
    frame = make_classification("nine_gaussians", n=900, noise=0.1, seed=0)
    means = frame.groupby("y")[["x1", "x2"]].mean().to_numpy()
    grid = {(a, b) for a in (-10, 0, 10) for b in (-10, 0, 10)}
    assert {tuple(np.round(mean, -1).astype(int)) for mean in means} == grid
    assert np.allclose(means, np.round(means, -1), atol=0.5)
    spread = frame.groupby("y")[["x1", "x2"]].std().to_numpy()
    assert np.allclose(spread, 1.0, atol=0.3)  # noise 0.1 of a grid spacing of 10


def test_blobs_spread_follows_noise():
    tight = make_classification("blobs", n=600, noise=0.05, seed=0)
    wide = make_classification("blobs", n=600, noise=0.2, seed=0)
    assert tight.groupby("y")["x1"].std().mean() == pytest.approx(0.5, rel=0.2)
    assert wide.groupby("y")["x1"].std().mean() == pytest.approx(2.0, rel=0.2)


def test_circles_without_noise_have_radii_1_and_half():
    frame = make_classification("circles", n=200, noise=0.0)
    radius = np.hypot(frame["x1"], frame["x2"])
    assert (frame["y"] == 0).sum() == (frame["y"] == 1).sum() == 100  # neither selection below is empty
    assert np.allclose(radius[frame["y"] == 0], 1.0)
    assert np.allclose(radius[frame["y"] == 1], 0.5)


def test_moons_without_noise_are_two_half_circles():
    frame = make_classification("moons", n=200, noise=0.0)
    upper, lower = frame[frame["y"] == 0], frame[frame["y"] == 1]
    assert len(upper) == len(lower) == 100
    assert np.allclose(np.hypot(upper["x1"], upper["x2"]), 1.0)
    assert np.allclose(np.hypot(lower["x1"] - 1, lower["x2"] - 0.5), 1.0)


def test_two_circles_are_two_ring_pairs_with_swapped_labels():
    frame = make_classification("two_circles", n=400, noise=0.0)
    right = frame["x1"] > 1.5
    left_radius = np.hypot(frame["x1"][~right], frame["x2"][~right])
    right_radius = np.hypot(frame["x1"][right] - 3, frame["x2"][right])
    assert right.sum() == 200
    assert set(np.round(left_radius, 6)) == {0.5, 1.0}
    assert set(np.round(right_radius, 6)) == {0.5, 1.0}
    assert (frame["y"][~right] == (left_radius < 0.75)).all()  # left: inner ring is class 1
    assert (frame["y"][right] == (right_radius > 0.75)).all()  # right: outer ring is class 1


def test_xor_labels_by_the_signs_before_noise():
    clean = make_classification("xor", n=500, noise=0.0, seed=1)
    assert clean[["x1", "x2"]].abs().to_numpy().max() <= 1
    assert (clean["y"] == (np.sign(clean["x1"]) != np.sign(clean["x2"]))).all()
    noisy = make_classification("xor", n=500, noise=0.1, seed=1)
    assert (noisy["y"] == clean["y"]).all()
    assert np.std(noisy["x1"] - clean["x1"]) == pytest.approx(0.1, rel=0.15)


def test_spiral_arms_are_half_a_turn_apart():
    frame = make_classification("spiral", n=400, noise=0.0)
    radius = np.hypot(frame["x1"], frame["x2"])
    angle = np.arctan2(frame["x2"], frame["x1"])
    assert radius.max() <= 1
    expected = 3 * np.pi * radius + np.pi * frame["y"]  # radius grows with the angle, arm 1 turned by pi
    assert np.allclose(np.cos(angle - expected), 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "squares"}, "Unknown classification dataset 'squares'. Choose one of: nine_gaussians, blobs"),
        ({"kind": "linear"}, "Unknown classification dataset 'linear'"),
        ({"kind": "moons", "n": 1}, "n must be a whole number of at least 2"),
        ({"kind": "moons", "n": 10.5}, "n must be a whole number"),
        ({"kind": "moons", "noise": -0.1}, "noise must be 0 or more"),
        ({"kind": "moons", "noise": float("nan")}, "noise must be 0 or more"),
    ],
)
def test_classification_bad_arguments(kwargs, match):
    with pytest.raises(LiftError, match=match):
        make_classification(**kwargs)


def test_whole_float_n_is_accepted():
    assert len(make_classification("moons", n=40.0)) == 40


# --- regression formulas ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, x, y",
    [
        ("linear", 1.0, 0.9),
        ("linear", -10.0, -9.0),
        ("quadratic", 0.0, -9.0),
        ("quadratic", 5.0, -4.5),
        ("quadratic", -10.0, 9.0),
        ("exponential", -10.0, -9.0),
        ("exponential", 10.0, 9.0),
        ("exponential", 0.0, 18 * ((1 - math.exp(-2)) / (math.exp(2) - math.exp(-2)) - 0.5)),
        ("cosine", 0.0, 9.0),
        ("cosine", 1.0, 0.0),
        ("cosine", 2.0, -9.0),
        ("l1norm", 0.0, -9.0),
        ("l1norm", -5.0, 0.0),
        ("l1norm", 10.0, 9.0),
        ("piecewise", 5.0, ((5 - 6 + 4) / 8 - 0.5) * 18),  # = -2.25
        ("piecewise", -5.0, 2.25),
        ("piecewise", 0.0, 0.0),
        ("piecewise", -3.0, 0.0),
        ("piecewise", 3.0, -6.75),
        ("piecewise", -10.0, -9.0),
        ("piecewise", 10.0, 9.0),
    ],
)
def test_regression_formula_values(kind, x, y):
    assert regression_function(kind, np.array([[x]]))[0] == pytest.approx(y, abs=1e-12)


@pytest.mark.parametrize(
    "kind, row, y",
    [
        ("linear", [1.0, 3.0], 1.8),
        ("quadratic", [0.0, 10.0], 0.0),
        ("cosine", [0.0, 2.0], 0.0),
        ("l1norm", [0.0, 10.0, -10.0], 3.0),
        ("piecewise", [5.0, 0.0], -1.125),
    ],
)
def test_regression_formulas_average_over_dimensions(kind, row, y):
    assert regression_function(kind, np.array([row]))[0] == pytest.approx(y)


def test_regression_function_is_vectorised_over_rows():
    X = np.array([[1.0], [2.0], [3.0]])
    assert regression_function("linear", X).tolist() == pytest.approx([0.9, 1.8, 2.7])


def test_regression_function_unknown_kind():
    with pytest.raises(LiftError, match="Unknown regression dataset 'moons'. Choose one of: linear, quadratic"):
        regression_function("moons", np.zeros((1, 1)))


# --- make_regression -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", REGRESSION_KINDS)
def test_regression_shapes_ranges_and_clean_test_rows(kind):
    train, test = make_regression(kind, n=100, p=3, noise=0.1, seed=0)
    assert (len(train), len(test)) == (80, 20)
    assert list(train.columns) == list(test.columns) == ["x1", "x2", "x3", "y"]
    X = pd.concat([train, test])[["x1", "x2", "x3"]].to_numpy()
    assert X.min() >= -10 and X.max() <= 10
    assert np.array_equal(test["y"].to_numpy(), regression_function(kind, test[["x1", "x2", "x3"]].to_numpy()))
    assert not np.allclose(train["y"], regression_function(kind, train[["x1", "x2", "x3"]].to_numpy()))


def test_regression_without_noise_is_clean():
    train, _ = make_regression("cosine", n=50, noise=0.0)
    assert np.array_equal(train["y"].to_numpy(), regression_function("cosine", train[["x1"]].to_numpy()))


def test_noise_scale_is_noise_times_std_of_clean_train_targets():
    def residuals(noise):
        train, _ = make_regression("quadratic", n=20000, noise=noise, seed=7)
        clean = regression_function("quadratic", train[["x1"]].to_numpy())
        return train["y"].to_numpy() - clean, clean

    small, clean = residuals(0.1)
    large, _ = residuals(0.3)
    assert np.allclose(large, 3 * small)  # same draws, scaled by noise
    assert small.std() == pytest.approx(0.1 * clean.std(), rel=0.03)
    assert abs(small.mean()) < 0.01 * clean.std()


def test_noise_follows_the_train_rows_spread_only():
    # The same seed draws the same X and the same standard normals for every kind, so the residuals of two
    # kinds differ exactly by the ratio of their clean train stds (the clean test rows play no part).
    def residuals_and_clean(kind):
        train, _ = make_regression(kind, n=20, noise=0.5, seed=11)
        clean = regression_function(kind, train[["x1"]].to_numpy())
        return train["y"].to_numpy() - clean, clean

    linear, linear_clean = residuals_and_clean("linear")
    cosine, cosine_clean = residuals_and_clean("cosine")
    assert np.allclose(cosine, linear * cosine_clean.std() / linear_clean.std())


def test_regression_is_deterministic_for_a_seed():
    first, again, other = (make_regression("l1norm", p=2, seed=s) for s in (5, 5, 6))
    pd.testing.assert_frame_equal(first[0], again[0])
    pd.testing.assert_frame_equal(first[1], again[1])
    assert not first[0].equals(other[0])


def test_regression_test_size():
    train, test = make_regression("linear", n=10, test_size=0.5)
    assert (len(train), len(test)) == (5, 5)
    train, test = make_regression("linear", n=2)
    assert (len(train), len(test)) == (1, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "spiral"}, "Unknown regression dataset 'spiral'"),
        ({"kind": "linear", "n": 1}, "n must be a whole number of at least 2"),
        ({"kind": "linear", "p": 0}, "p must be a whole number of at least 1"),
        ({"kind": "linear", "noise": -1.0}, "noise must be 0 or more"),
        ({"kind": "linear", "test_size": 1.0}, "test_size must be between 0 and 1"),
        ({"kind": "linear", "n": 2, "test_size": 0.9}, "leaves no training rows"),
    ],
)
def test_regression_bad_arguments(kwargs, match):
    with pytest.raises(LiftError, match=match):
        make_regression(**kwargs)
