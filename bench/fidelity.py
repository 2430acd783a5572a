"""The fidelity suite: LIFT with the shipped defaults against the scikit-learn baselines, on identical splits.

    python -m bench.fidelity [--quick] [--only moons,linear] [--seeds 3] [--set lr=2e-3 ...]
                             [--results bench/results/fidelity.jsonl] [--write-benchmarks]
    python -m bench.fidelity --compare [--levers] [--only ...]   # previous against shipped defaults, side by side
    python -m bench.fidelity --check [--model ...]   # do the shipped defaults, unchanged, learn a separable table?

Every finished (set, seed) appends one JSON line to --results, and a rerun skips what is already there, so a
long suite can be stopped and continued. The Markdown table is built from those lines; --write-benchmarks
puts it into BENCHMARKS.md between the fidelity markers. `--set KEY=VALUE` overrides a TrainConfig field, for
trying a candidate default without editing code (such rows are labelled with their overrides).

`--check` is the full-default learning check that the test suite ran until its SmolLM2 run was cut to 40 steps
(tests/test_smollm2.py): the shipped defaults, unchanged (their whole 220-step budget, which a perfect validation
score may end sooner), on 60 rows of two well-separated Gaussians, must score at least 0.9 on the test rows (chance:
0.5) with no invalid answer. It prints the result and exits 1 if any condition fails (a few minutes on 2 cores).

Timings depend on the machine and on anything else running: run the suite alone.
"""

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.report import publish
from lift_core import synthetic
from lift_core.config import DEFAULTS, PREVIOUS_DEFAULTS, TrainConfig
from lift_core.estimate import estimate_duration
from lift_core.evaluation import majority_warning, run_baselines
from lift_core.training import run_training

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results" / "fidelity.jsonl"
COMPARE_RESULTS = REPO_ROOT / "bench" / "results" / "compare.jsonl"

# LIFT/GPT-J's mean RAE over 3 simulations (p = 1), from the paper's repository (syn_mean_across_3sims.csv).
PAPER_GPTJ_RAE = {"linear": 0.081, "quadratic": 0.111, "exponential": 0.109, "cosine": 0.385,
                  "l1norm": 0.100, "piecewise": 0.146}
TWO_D_SETS = ("blobs", "circles", "moons", "two_circles", "nine_gaussians", "xor", "spiral")
TABLES = ("breast_cancer", "make_classification", "fruit", "mixed")


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "2d", "table" or "regression"
    seeds: tuple[int, ...]


# One seed per set keeps the full suite near 90 minutes on 2 CPU cores (a 2-D set trains 300 steps in about
# 5 minutes, breast cancer's longer prompts take about 12); --seeds 3 gives the paper's mean of three.
FULL = ([Case(name, "2d", (0,)) for name in TWO_D_SETS]
        + [Case(name, "table", (0,)) for name in TABLES]
        + [Case(name, "regression", (0,)) for name in PAPER_GPTJ_RAE])
# About 20 minutes: a curved and a nested 2-D set, a real table with text, and a regression.
QUICK = [Case("moons", "2d", (0,)), Case("circles", "2d", (0,)), Case("fruit", "table", (0,)),
         Case("quadratic", "regression", (0,))]
# What --compare measures: the quick suite, the two tables that take longest, and the table with text and gaps.
COMPARED = QUICK + [Case("breast_cancer", "table", (0,)), Case("make_classification", "table", (0,)),
                    Case("mixed", "table", (0,))]

# The settings --compare runs on each set, as TrainConfig overrides: the defaults before the CPU speed-ups, and
# the shipped ones; --levers adds each speed-up alone on top of the previous defaults, at the value tried.
CONFIGS = {"previous": PREVIOUS_DEFAULTS, "shipped": {}}
LEVERS = {
    "lora_layers=15": {**PREVIOUS_DEFAULTS, "lora_layers": 15},
    "trim_zeros": {**PREVIOUS_DEFAULTS, "trim_zeros": True},
    "stop_when_perfect": {**PREVIOUS_DEFAULTS, "evaluations": DEFAULTS.evaluations,
                          "stop_when_perfect": DEFAULTS.stop_when_perfect},
}


def make_tables(case: Case, seed: int, folder: Path) -> dict:
    """Write the case's table(s) into `folder`; returns the TrainConfig fields that point at them."""
    train_path, test_path = folder / "train.csv", folder / "test.csv"
    if case.kind == "2d":
        synthetic.make_classification(case.name, n=500, noise=0.1, seed=seed).to_csv(train_path, index=False)
        return {"data": str(train_path), "target": "y"}
    if case.kind == "regression":
        train, test = synthetic.make_regression(case.name, n=250, p=1, noise=0.1, seed=seed)
        train.to_csv(train_path, index=False)
        test.to_csv(test_path, index=False)
        return {"data": str(train_path), "target": "y", "test_data": str(test_path)}
    if case.name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer(as_frame=True)
        frame = bunch.frame[[column for column in bunch.feature_names if column.startswith("mean ")]].copy()
        frame["diagnosis"] = np.asarray(bunch.target_names)[bunch.target]
        frame.to_csv(train_path, index=False)
        return {"data": str(train_path), "target": "diagnosis"}
    if case.name == "make_classification":
        from sklearn.datasets import make_classification

        X, y = make_classification(n_samples=500, n_features=6, n_informative=4, n_redundant=1, n_classes=3,
                                   random_state=seed)
        frame = pd.DataFrame(X, columns=[f"f{i + 1}" for i in range(6)])
        frame["y"] = y
        frame.to_csv(train_path, index=False)
        return {"data": str(train_path), "target": "y"}
    if case.name == "mixed":
        mixed_table(seed).to_csv(train_path, index=False)
        return {"data": str(train_path), "target": "outcome"}
    if case.name == "fruit":
        return {"data": str(REPO_ROOT / "assets" / "examples" / "fruit.csv"), "target": "fruit"}
    raise ValueError(case.name)


def mixed_table(seed: int, n: int = 400) -> pd.DataFrame:
    """A table as real ones look: 7 features, 2 of them text categories, and 5% of the feature cells missing.

    A noisy 2-class make_classification whose 4th and 6th features are cut at their quartiles into words; the
    rest stay numbers of different scales.
    """
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=7, n_informative=4, n_redundant=1, flip_y=0.05,
                               random_state=seed)
    frame = pd.DataFrame({"age": np.round(45 + 12 * X[:, 0]), "income": np.round(50_000 + 15_000 * X[:, 1], -2),
                          "score": X[:, 2], "region": pd.qcut(X[:, 3], 4, labels=["north", "east", "south", "west"]),
                          "ratio": 0.5 + 0.1 * X[:, 4], "plan": pd.qcut(X[:, 5], 3, labels=["basic", "plus", "pro"]),
                          "visits": np.round(np.exp(1.5 + 0.5 * X[:, 6]))})
    frame = frame.astype({"region": object, "plan": object})
    holes = np.random.default_rng(seed).random(frame.shape) < 0.05
    frame = frame.mask(holes)
    frame["outcome"] = np.where(y == 1, "yes", "no")
    return frame


def measure(case: Case, seed: int, overrides: dict, model: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        config = TrainConfig(**make_tables(case, seed, folder), model=model, seed=seed, **overrides)
        estimate = estimate_duration(config, folder / "no-past-runs")  # what the Train tab says on a new machine
        started = time.perf_counter()
        run = run_training(config, folder / "run")
        total_s = time.perf_counter() - started
        evaluation = run.eval_results()
        if evaluation is None:
            raise SystemExit(f"{case.name} seed {seed}: the run ended {run.status()['state']}, without a test score")
        trained = [row for row in run.metrics() if row.get("total_steps")]
        status = run.status()
        baselines = run_baselines(run)
    classification = evaluation["task"] == "classification"
    score = "accuracy" if classification else "rae"
    table = baselines.set_index("name")[score]
    best = table.idxmax() if classification else table.idxmin()
    return {
        "set": case.name, "kind": case.kind, "seed": seed, "model": model, "overrides": overrides,
        "accuracy": evaluation.get("accuracy"), "generated_accuracy": evaluation.get("generated_accuracy"),
        "rae": evaluation.get("rae"), "invalid_rate": evaluation["invalid_rate"],
        "logreg": table.get("logreg"), "best_baseline": best, "best_baseline_score": float(table[best]),
        "steps": trained[-1]["step"] if trained else 0,
        # The validation score at each evaluation, and the step whose weights were kept: how the budget was spent.
        "val_curve": [[row["step"], _validation_score(row)] for row in trained
                      if _validation_score(row) is not None],
        "best_step": status.get("best_step"),
        "wall_s": round(total_s, 1),  # model loading, training, validation and the test evaluation
        "estimate_s": round(estimate.seconds, 1) if estimate.seconds else None,
        "fit_s": round(total_s - evaluation.get("eval_seconds", 0.0), 1),
        "predict_s": round(evaluation.get("eval_seconds", 0.0), 1),
        "threads": torch.get_num_threads(),  # timings from a 1-thread run are not comparable with 2 threads
        "finished": time.strftime("%Y-%m-%d %H:%M"),
    }


def separable_table(n: int = 60, seed: int = 3, std: float = 0.6) -> pd.DataFrame:
    """The --check table: two well-separated classes 0 and 1, centers (-2, -2) and (2, 2), alternating rows; columns
    x1, x2, y. The same frame as tests/helpers.py's two_gaussians(n=60, seed=3) (a test keeps them equal)."""
    rng = np.random.default_rng(seed)
    codes = np.arange(n) % 2
    points = np.where(codes[:, None] == 1, 2.0, -2.0) + rng.normal(scale=std, size=(n, 2))
    return pd.DataFrame({"x1": points[:, 0], "x2": points[:, 1], "y": codes})


def check_failures(results: dict | None, state: str, total_steps: int | None, planned_steps: int) -> list[str]:
    """What a default run on the separable table has to show, as sentences for each condition it misses: it
    completed its planned steps' budget (a perfect validation score may stop it sooner) with at least 0.9 test
    accuracy, no invalid answer and no majority-class warning."""
    if results is None:
        return [f"the run ended {state}, without a test score"]
    failures = []
    if state != "completed":
        failures.append(f"the run ended {state}, not completed")
    if total_steps != planned_steps:
        failures.append(f"the run planned {total_steps} steps, not the defaults' {planned_steps}")
    if results["accuracy"] < 0.9:
        failures.append(f"test accuracy {results['accuracy']:.3f} is below 0.9")
    if results["invalid_rate"] != 0:
        failures.append(f"{results['invalid_rate']:.1%} of the answers were invalid")
    warning = majority_warning(results)
    if warning:
        failures.append(warning)
    return failures


def check_defaults(model: str) -> int:
    """Trains the shipped defaults on separable_table() and reports check_failures; the exit code: 1 if any."""
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        separable_table().to_csv(folder / "data.csv", index=False)
        config = TrainConfig(data=str(folder / "data.csv"), target="y", model=model)
        started = time.perf_counter()
        run = run_training(config, folder / "run")
        wall_s = time.perf_counter() - started
        results, state = run.eval_results(), run.status()["state"]
        trained = [row for row in run.metrics() if row.get("total_steps")]
        planned = config.planned_steps(run.dataset_info().n_train)
        failures = check_failures(results, state, trained[0]["total_steps"] if trained else None, planned)
    print(json.dumps({"check": "defaults learn a separable table", "model": model, "state": state,
                      "accuracy": (results or {}).get("accuracy"), "log_loss": (results or {}).get("log_loss"),
                      "invalid_rate": (results or {}).get("invalid_rate"),
                      "steps": trained[-1]["step"] if trained else 0, "planned_steps": planned,
                      "wall_s": round(wall_s, 1), "threads": torch.get_num_threads(),
                      "passed": not failures}))
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


def compare_markdown(rows: list[dict]) -> str:
    """Each configuration beside the previous defaults on the same set and seed: its score, the score's change,
    its wall time and how many times faster it ran."""
    previous = {(row["set"], row["seed"]): row for row in rows if row["config"] == "previous"}
    lines = ["| set | seed | settings | accuracy or RAE | change | best baseline | steps | wall s | speed-up "
             "| estimated s | threads |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        score = "accuracy" if row["accuracy"] is not None else "rae"
        before = previous.get((row["set"], row["seed"]))
        change = "" if before is None or row is before else f"{row[score] - before[score]:+.3f}"
        speed_up = "" if before is None or row is before else f"{before['wall_s'] / row['wall_s']:.2f}x"
        lines.append(f"| {row['set']} | {row['seed']} | {row['config']} | {row[score]:.3f} | {change} "
                     f"| {row['best_baseline']} {row['best_baseline_score']:.3f} | {row['steps']} | {row['wall_s']:.0f} "
                     f"| {speed_up} | {_text(row.get('estimate_s'), 0)} | {row['threads']} |")
    return "\n".join(lines)


def compare(cases: list[Case], seeds, configs: dict, model: str, results: Path) -> None:
    """Every configuration on every set, one after the other on the same split, in one process: the speed-ups are
    ratios measured in one sitting."""
    done = {(row["set"], row["seed"], row["model"], row["config"]) for row in read_results(results)}
    for case in cases:
        for seed in case.seeds if seeds is None else range(seeds):
            for name, overrides in configs.items():
                if (case.name, seed, model, name) in done:
                    continue
                row = {**measure(case, seed, overrides, model), "config": name}
                with results.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def _validation_score(row: dict):
    return row["val_accuracy"] if row.get("val_accuracy") is not None else row.get("val_rae")


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean(rows: list[dict], key: str):
    values = [row[key] for row in rows if row.get(key) is not None]
    return float(np.mean(values)) if values else None


def _text(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict]) -> str:
    """One line per set (and overrides): means over its seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["set"], json.dumps(row["overrides"], sort_keys=True)), []).append(row)
    lines = [
        "| set | seeds | overrides | accuracy (scored) | accuracy (generated) | RAE | paper GPT-J RAE | invalid rate "
        "| logreg | best baseline | steps | fit s | predict s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, overrides), group in groups.items():
        best_names = sorted({row["best_baseline"] for row in group})
        lines.append(
            f"| {name} | {len(group)} | {overrides if overrides != '{}' else 'defaults'} "
            f"| {_text(_mean(group, 'accuracy'))} | {_text(_mean(group, 'generated_accuracy'))} "
            f"| {_text(_mean(group, 'rae'))} | {_text(PAPER_GPTJ_RAE.get(name))} "
            f"| {_text(_mean(group, 'invalid_rate'))} | {_text(_mean(group, 'logreg'))} "
            f"| {'/'.join(best_names)} {_text(_mean(group, 'best_baseline_score'))} "
            f"| {_mean(group, 'steps'):.0f} | {_mean(group, 'fit_s'):.0f} | {_mean(group, 'predict_s'):.0f} |")
    return "\n".join(lines)


# Fields each case sets itself: its table, target, seed and the suite's model.
CASE_FIELDS = ("data", "target", "test_data", "seed", "model")
SETTABLE_TYPES = (str, int, float, bool)


def parse_overrides(pairs: list[str]) -> dict:
    types = {field.name: type(field.default) for field in fields(TrainConfig)}
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key in CASE_FIELDS or types.get(key) not in SETTABLE_TYPES:
            settable = sorted(name for name, kind in types.items() if kind in SETTABLE_TYPES and name not in CASE_FIELDS)
            raise SystemExit(f"--set {key}: not a setting the suite can vary; choose one of {', '.join(settable)}")
        overrides[key] = value if types[key] is str else (value.lower() == "true" if types[key] is bool
                                                         else types[key](value))
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed on a subset, for tuning")
    parser.add_argument("--only", help="comma-separated set names (instead of --quick's subset)")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 for every chosen set (default: one seed, 0)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--results", type=Path, help=f"default: {DEFAULT_RESULTS.relative_to(REPO_ROOT)}, or "
                                                        f"{COMPARE_RESULTS.relative_to(REPO_ROOT)} with --compare")
    parser.add_argument("--compare", action="store_true",
                        help="the previous and the shipped defaults side by side on each set (the quick suite, breast "
                             "cancer, make_classification and the mixed table unless --only says otherwise)")
    parser.add_argument("--levers", action="store_true", help="with --compare: also each speed-up alone")
    parser.add_argument("--configs", help="with --compare: only these of its settings (comma-separated), e.g. "
                                          "previous; the table still compares every row measured")
    parser.add_argument("--write-benchmarks", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="only check that the shipped defaults, unchanged, learn a small separable table "
                             "(accuracy >= 0.9, no invalid answer); exit 1 if not")
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    if args.check:
        if overrides:
            raise SystemExit("--check trains the shipped defaults: it takes no --set")
        raise SystemExit(check_defaults(args.model))
    cases = COMPARED if args.compare else QUICK if args.quick else FULL
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - {case.name for case in FULL}
        if unknown:
            raise SystemExit(f"--only: unknown sets {', '.join(sorted(unknown))}; "
                             f"choose from {', '.join(case.name for case in FULL)}")
        cases = [case for case in FULL if case.name in wanted]
    results = args.results or (COMPARE_RESULTS if args.compare else DEFAULT_RESULTS)
    results.parent.mkdir(parents=True, exist_ok=True)
    if args.compare:
        configs = {**CONFIGS, **(LEVERS if args.levers else {})}
        if args.configs:
            configs = {name: configs[name] for name in args.configs.split(",")}
        compare(cases, args.seeds, {name: {**values, **overrides} for name, values in configs.items()}, args.model,
                results)
        rows = [row for row in read_results(results) if row["model"] == args.model]
        publish("compare", compare_markdown(rows), args.write_benchmarks)
        return
    done = {(row["set"], row["seed"], row["model"], json.dumps(row["overrides"], sort_keys=True))
            for row in read_results(results)}
    for case in cases:
        for seed in case.seeds if args.seeds is None else range(args.seeds):
            if (case.name, seed, args.model, json.dumps(overrides, sort_keys=True)) in done:
                continue
            row = measure(case, seed, overrides, args.model)
            with results.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    table = markdown([row for row in read_results(results) if row["model"] == args.model])
    publish("fidelity", table, args.write_benchmarks)


if __name__ == "__main__":
    main()
