"""Regenerates the example tables in assets/examples (MIT-licensed with the project, fully synthetic) and, with
--runs, the example runs in assets/example_runs: each table of lift_core.examples trained with the default
settings, evaluated, its baselines fitted and its 60x60 maps (the model's boundary and spread, the default
baseline's) drawn and saved, so the app shows them without training or loading a model.

Run from the repository root:
    python -m assets.make_examples            # the tables
    python -m assets.make_examples --runs     # the tables, then the runs (about an hour on 2 CPU cores)

The adapters are stored in 16-bit floats (half the bytes); the saved results are computed from those weights.

The runs are reproducible on the same hardware and thread count: the same adapter, predictions, scores and maps,
byte for byte (tests/test_examples.py checks it with the tiny model). Only what records when and how long things
took differs: status.json, metrics.jsonl (elapsed time) and eval.json's timing fields.
"""

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from lift_core.examples import EXAMPLE_RUNS_DIR, EXAMPLE_TABLES, EXAMPLE_TABLES_DIR
from lift_core.synthetic import make_classification, make_regression

MAP_RESOLUTION = 60
# The threads every example trains with: float sums, hence the weights, depend on how work is split; one thread
# also keeps a make beside other work from slowing to a crawl (two OpenMP threads spin against any third process).
THREADS = 1


def fruit_table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """A small mixed table: numeric and categorical features, a text label."""
    rng = np.random.default_rng(seed)
    fruit = rng.choice(["apple", "banana", "cherry"], size=n)
    weight = np.select([fruit == "apple", fruit == "banana"], [150, 120], 8) + rng.normal(0, 12, n)
    length = np.select([fruit == "apple", fruit == "banana"], [7.5, 18.0], 2.0) + rng.normal(0, 1.0, n)
    colour = np.where(rng.random(n) < 0.8,
                      np.select([fruit == "apple", fruit == "banana"], ["red", "yellow"], "dark red"),
                      rng.choice(["green", "red", "yellow"], size=n))
    return pd.DataFrame({"weight g": weight.round(1), "length cm": length.round(2), "colour": colour,
                         "fruit": fruit})


def make_tables(folder: Path = EXAMPLE_TABLES_DIR) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "moons": make_classification("moons", n=400, noise=0.15, seed=0),
        "circles": make_classification("circles", n=300, noise=0.1, seed=0),
        "fruit": fruit_table(),
        "quadratic": pd.concat(make_regression("quadratic", n=200, p=1, noise=0.1, seed=0), ignore_index=True),
    }
    for name, table in tables.items():
        table.to_csv(folder / EXAMPLE_TABLES[name].file, index=False)


def make_run(name: str, runs_dir: Path, model: str, tables_dir: Path = EXAMPLE_TABLES_DIR, **settings) -> Path:
    """One example run, trained from scratch with the default settings (`settings` overrides some, for tests)."""
    from lift_core.boundary import (DEFAULT_BASELINE, DEFAULT_MARGIN, baseline_boundary, explorable_features,
                                    model_boundary)
    from lift_core.config import TrainConfig
    from lift_core.errors import LiftError
    from lift_core.evaluation import cached_baselines, ensure_evaluated
    from lift_core.training import run_training

    example = EXAMPLE_TABLES[name]
    out = runs_dir / example.run_name
    shutil.rmtree(out, ignore_errors=True)
    config = TrainConfig(data=str(_relative(tables_dir / example.file)), target=example.target,
                         template=example.template, model=model, **settings)
    run = run_training(config, out)
    if run.status()["state"] != "completed":
        raise SystemExit(f"{name}: the run ended {run.status()['state']}: {run.status().get('error')}")
    # Half the bytes to ship; the test results, baselines and maps are then those of the shipped weights.
    run.pack_adapter_for_shipping()
    ensure_evaluated(run)
    cached_baselines(run)
    try:
        features = explorable_features(run)
    except LiftError:
        features = None  # a table with text features has no map
    if features:
        margin = DEFAULT_MARGIN[len(features)]
        model_boundary(run, resolution=MAP_RESOLUTION, margin=margin)
        baseline_boundary(run, DEFAULT_BASELINE[run.dataset_info().task], resolution=MAP_RESOLUTION, margin=margin)
    shutil.rmtree(run.checkpoints_dir, ignore_errors=True)  # what a resume needs; an example is never resumed
    return out


def _relative(path: Path) -> Path:
    """A table's path as the run records it: relative to the working directory (the repository root) when
    inside it, so a run made on one machine reads the same on another."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def main(argv=None) -> None:
    from lift_core.models import SMOLLM2_MODEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", action="store_true", help="also train the example runs (about an hour on a CPU)")
    parser.add_argument("--only", default=",".join(EXAMPLE_TABLES), help="comma-separated tables to train on")
    parser.add_argument("--model", default=SMOLLM2_MODEL)
    parser.add_argument("--out", type=Path, default=EXAMPLE_RUNS_DIR)
    args = parser.parse_args(argv)
    make_tables()
    if args.runs:
        import torch

        torch.set_num_threads(THREADS)
        for name in args.only.split(","):
            print(f"training the {name} example …", flush=True)
            print(make_run(name, args.out, args.model), flush=True)


if __name__ == "__main__":
    main()
