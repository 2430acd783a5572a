"""Adaptive refinement on hand-made maps: which points get computed, and how the rest is filled in."""

import numpy as np
import pytest

from lift_core.refine import GUARANTEED_CELLS_PER_SIDE, refine


def plane(resolution: int):
    """Coordinates in [-1, 1] of a 2-D grid's points, numbered as boundary.grid_over numbers them."""
    axis = np.linspace(-1, 1, resolution)
    x, y = np.meshgrid(axis, axis, indexing="xy")
    return x.ravel(), y.ravel()


class Recorder:
    """A map's values at the points asked for, remembering every point asked."""

    def __init__(self, values: np.ndarray):
        self.values = values
        self.asked: list[int] = []

    def __call__(self, points: np.ndarray) -> np.ndarray:
        self.asked += points.tolist()
        return self.values[points]


def class_changes(corner_values: np.ndarray) -> np.ndarray:
    winners = corner_values.argmax(axis=-1)
    return (winners != winners[:, :1]).any(axis=1)


def one_hot(inside: np.ndarray) -> np.ndarray:
    return np.c_[inside, ~inside].astype(float)


def disc(resolution: int, radius: float = 0.6) -> np.ndarray:
    x, y = plane(resolution)
    return one_hot(np.hypot(x, y) < radius)


@pytest.mark.parametrize("resolution", [2, 3, 10, 60, 61])
def test_an_exhaustive_map_computes_every_point_once_and_exactly(resolution):
    values = np.random.default_rng(0).random((resolution ** 2, 3))
    compute = Recorder(values)
    levels = list(refine(resolution, 2, compute, class_changes, exhaustive=True))
    assert sorted(compute.asked) == list(range(resolution ** 2))
    assert levels[-1].final and levels[-1].scored.all()
    np.testing.assert_array_equal(levels[-1].values, values)


def test_a_sharp_boundary_is_exact_from_a_fraction_of_the_points():
    truth = disc(60)
    compute = Recorder(truth)
    levels = list(refine(60, 2, compute, class_changes))
    last = levels[-1]
    assert len(compute.asked) == len(set(compute.asked)) == last.scored.sum()  # no point computed twice
    assert (last.values.argmax(axis=1) == truth.argmax(axis=1)).all()
    assert last.scored.sum() < 0.25 * len(truth)
    answered = [level.scored.sum() for level in levels]
    assert answered == sorted(answered) and answered[0] == 25  # coarse first: a 5x5 first picture
    assert [level.final for level in levels] == [False] * (len(levels) - 1) + [True]


def test_every_level_is_a_whole_map_with_nothing_left_empty():
    for level in refine(60, 2, Recorder(disc(60)), class_changes):
        assert not np.isnan(level.values).any()
        np.testing.assert_allclose(level.values.sum(axis=1), 1.0)


def test_points_in_settled_cells_are_interpolated_from_the_corners():
    x, y = plane(60)
    linear = np.c_[1 + x + 2 * y, 3 - y]
    never = lambda corner_values: np.zeros(len(corner_values), dtype=bool)
    last = list(refine(60, 2, Recorder(linear), never))[-1]
    assert last.scored.sum() < 300  # the guaranteed lattice only
    np.testing.assert_allclose(last.values, linear, atol=1e-12)  # bilinear interpolation keeps a plane exact


@pytest.mark.parametrize("seed", range(5))
def test_an_island_as_wide_as_a_guaranteed_cell_is_found(seed):
    """The weak spot is a region thinner than a cell: one at least a guaranteed cell wide always has a computed
    point inside, and refinement finds its edges."""
    width = 6  # points across: a 60x60 map's guaranteed cells are 4 steps wide
    assert 59 / GUARANTEED_CELLS_PER_SIDE < width - 1
    i, j = np.random.default_rng(seed).integers(0, 60 - width, size=2)
    island = np.zeros((60, 60), dtype=bool)
    island[j:j + width, i:i + width] = True
    truth = one_hot(island.ravel())
    last = list(refine(60, 2, Recorder(truth), class_changes))[-1]
    assert (last.values.argmax(axis=1) == truth.argmax(axis=1)).all()


def test_a_line_refines_only_around_its_steps():
    axis = np.linspace(-1, 1, 100)
    truth = one_hot((axis > -0.3) & (axis < 0.55))
    compute = Recorder(truth)
    last = list(refine(100, 1, compute, class_changes))[-1]
    assert (last.values.argmax(axis=1) == truth.argmax(axis=1)).all()
    assert len(compute.asked) < 40
