"""Adaptive refinement of a map over a regular grid, as contour plotters and quadtree renderers do it: values are
computed on a coarse lattice first, then only inside the cells that need it, halving them down to neighbouring
grid points; every other grid point takes the values interpolated from the corners of the cell it lies in.

It knows nothing of models or tables. `compute` gets grid point numbers and returns their values, one row each;
`needs_refinement` judges cells by their corners' values. Point numbers follow boundary.grid_over: the first axis
varies fastest, so point (i, j) of a 2-D grid is number i + j * resolution.
"""

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

# The first picture has at least this many cells per side (5x5 points on a 60x60 map: about a second with
# smollm2-135m on 2 CPU cores).
FIRST_CELLS_PER_SIDE = 3
# Cells are split without being judged until they are at most about 1/14 of the map wide (a 16x16 lattice, 7% of
# a 60x60 map): the guard against a region thinner than a cell whose corners all miss it. An island or an arm of
# a spiral at least that wide always has a computed point inside it.
GUARANTEED_CELLS_PER_SIDE = 14

Compute = Callable[[np.ndarray], np.ndarray]  # point numbers (n,) -> values (n, columns)
Judge = Callable[[np.ndarray], np.ndarray]  # points' values (cells, points, columns) -> refine? (cells,)


@dataclass
class Level:
    """One picture of the map: the last level's is final."""

    values: np.ndarray  # (points, columns): computed where `scored`, interpolated from computed corners elsewhere
    scored: np.ndarray  # (points,) bool
    final: bool


def power_of_two_step(resolution: int, cells: int) -> int:
    """The largest power-of-two spacing that still cuts `resolution` points into at least `cells` cells."""
    step = 1
    while (resolution - 1) / (2 * step) >= cells:
        step *= 2
    return step


def refine(resolution: int, dims: int, compute: Compute, needs_refinement: Judge, *,
           exhaustive: bool = False) -> Iterator[Level]:
    """The map level by level, coarse first: each level computes the corners of its cells, then splits the cells
    that are wider than the guaranteed spacing or that `needs_refinement` (every splittable cell when
    `exhaustive`, so that the last level has computed every point).

    A kept cell whose edge later gets computed points (from a split neighbour) is judged again with them, so a
    boundary that crosses the cell through one edge only is not missed.
    """
    axis = np.unique(np.r_[np.arange(0, resolution, power_of_two_step(resolution, FIRST_CELLS_PER_SIDE)),
                           resolution - 1])
    starts = np.array(list(itertools.product(axis[:-1], repeat=dims)))[:, ::-1]  # first axis fastest, as the grid
    ends = np.array(list(itertools.product(axis[1:], repeat=dims)))[:, ::-1]
    guaranteed = power_of_two_step(resolution, GUARANTEED_CELLS_PER_SIDE)
    values = None  # allocated once the first answers say how many columns there are
    scored = np.zeros(resolution ** dims, dtype=bool)
    kept_low, kept_high = np.empty((0, dims), int), np.empty((0, dims), int)
    while True:
        corners = _point_numbers(_corners(starts, ends), resolution)
        new = np.unique(corners[~scored[corners]])
        if len(new):
            computed = np.asarray(compute(new), dtype=float)
            if values is None:
                values = np.full((resolution ** dims, computed.shape[1]), np.nan)
            values[new], scored[new] = computed, True

        splittable = (ends - starts > 1).any(axis=1)
        if exhaustive:
            split = splittable
        else:
            forced = (ends - starts).max(axis=1) > guaranteed
            split = splittable & (forced | needs_refinement(values[corners]))
            reopened = _edges_that_disagree(kept_low, kept_high, values, scored, resolution, needs_refinement)
            starts = np.r_[starts, kept_low[reopened]]
            ends = np.r_[ends, kept_high[reopened]]
            split = np.r_[split, np.ones(reopened.sum(), dtype=bool)]
            kept_low, kept_high = kept_low[~reopened], kept_high[~reopened]
        final = not split.any()
        leaves = np.r_[kept_low, starts], np.r_[kept_high, ends]
        yield Level(_filled(values, scored, *leaves, resolution), scored.copy(), final)
        if final:
            return
        kept_low, kept_high = np.r_[kept_low, starts[~split]], np.r_[kept_high, ends[~split]]
        starts, ends = _halves(starts[split], ends[split])


def _corners(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(cells, 2**dims, dims) coordinates of each cell's corners."""
    dims = starts.shape[1]
    pattern = np.array(list(itertools.product((0, 1), repeat=dims)), dtype=bool)
    return np.where(pattern[None], ends[:, None], starts[:, None])


def _point_numbers(coordinates: np.ndarray, resolution: int) -> np.ndarray:
    return (coordinates * resolution ** np.arange(coordinates.shape[-1])).sum(axis=-1)


def _halves(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cell cut in two along every axis where it is wider than one step: 2**dims children or fewer. The cut
    falls on the coarse lattice's power-of-two points (the last cell of an axis is narrower than the others)."""
    widths = ends - starts
    below = 2 ** np.floor(np.log2(np.maximum(widths - 1, 1))).astype(int)  # the largest power of two < width
    middles = np.where(widths > 1, starts + below, ends)
    low, high = [], []
    for pattern in itertools.product((0, 1), repeat=starts.shape[1]):
        upper = np.array(pattern, dtype=bool)
        child_low = np.where(upper, middles, starts)
        child_high = np.where(upper, ends, middles)
        real = (child_high > child_low).all(axis=1)  # an axis that was not cut gives one child, not two
        low.append(child_low[real])
        high.append(child_high[real])
    return np.concatenate(low), np.concatenate(high)


def _edges_that_disagree(starts, ends, values, scored, resolution, needs_refinement) -> np.ndarray:
    """Which kept cells need splitting after all, judged by their corners and the computed points on their
    edges (computed since by a split neighbour)."""
    reopen = np.zeros(len(starts), dtype=bool)
    corners = _point_numbers(_corners(starts, ends), resolution)
    for cell, (low, high) in enumerate(zip(starts, ends)):
        ranges = [np.arange(a, b + 1) for a, b in zip(low, high)]
        box = _point_numbers(np.array(list(itertools.product(*ranges[::-1])))[:, ::-1], resolution)
        known = box[scored[box]]
        if len(known) > len(corners[cell]):
            judged = np.r_[corners[cell], np.setdiff1d(known, corners[cell])]
            reopen[cell] = needs_refinement(values[judged][None])[0]
    return reopen


def _filled(values, scored, starts, ends, resolution) -> np.ndarray:
    """`values` with every point that was not computed interpolated (bilinearly, in 2-D) from the corners of the
    cell it lies in. Cells of one shape are filled together."""
    filled = values.copy()
    shapes = ends - starts
    for shape in np.unique(shapes, axis=0):
        group = (shapes == shape).all(axis=1)
        low = starts[group]
        offsets = np.array(list(itertools.product(*[range(width + 1) for width in shape[::-1]])))[:, ::-1]
        fractions = offsets / shape  # (offsets, dims)
        points = _point_numbers(low[:, None] + offsets[None], resolution)  # (cells, offsets)
        corner_points = _point_numbers(_corners(low, ends[group]), resolution)  # (cells, corners)
        pattern = np.array(list(itertools.product((0, 1), repeat=len(shape))), dtype=bool)
        weights = np.where(pattern[None], fractions[:, None], 1 - fractions[:, None]).prod(axis=-1)
        interpolated = np.einsum("oc,ncm->nom", weights, values[corner_points])
        missing = ~scored[points]
        filled[points[missing]] = interpolated[missing]
    return filled
