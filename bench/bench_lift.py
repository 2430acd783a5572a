"""Accuracy and speed of LIFT with a real model on the paper's 2-D sets, next to the baselines.

    python -m bench.bench_lift [--model smollm2-135m] [--sets moons,blobs] [--n 500] [--epochs 3]

Prints one Markdown table row per set, for BENCHMARKS.md. Timings depend on the machine: run it alone.
"""

import argparse
import tempfile
import time
from pathlib import Path

from lift_core import synthetic
from lift_core.evaluation import run_baselines
from lift_core.predict import Predictor
from lift_core.training import TrainConfig, run_training


def measure(kind: str, args, workdir: Path) -> dict:
    table = workdir / f"{kind}.csv"
    synthetic.make_classification(kind, n=args.n, noise=args.noise, seed=0).to_csv(table, index=False)
    config = TrainConfig(data=str(table), target="y", model=args.model, quant=args.quant, epochs=args.epochs,
                         lr=args.lr, batch_size=args.batch_size, seed=0, eval_steps=10_000)
    run = run_training(config, workdir / f"run-{kind}")
    rows = [row for row in run.metrics() if row.get("loss") is not None]
    last = rows[-1]
    evaluation = run.eval_results()
    baselines = run_baselines(run).set_index("name")["accuracy"]

    predictor = Predictor.from_run(run)
    test = run.split("test")
    started = time.perf_counter()
    predictor.predict(test)
    scoring_rate = len(test) / (time.perf_counter() - started)
    started = time.perf_counter()
    predictor.predict(test, samples=1, temperature=0.0)
    generation_rate = len(test) / (time.perf_counter() - started)
    return {
        "set": kind, "steps": last["step"], "s_per_step": last["elapsed_s"] / last["step"],
        "accuracy": evaluation["accuracy"], "generated_accuracy": evaluation["generated_accuracy"],
        "invalid_rate": evaluation["invalid_rate"], "best_baseline": f"{baselines.idxmax()} {baselines.max():.3f}",
        "logreg": baselines["logreg"], "scored_per_s": scoring_rate, "generated_per_s": generation_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quant", default="none")
    parser.add_argument("--sets", default="moons,blobs")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    print("| set | steps | s/step | accuracy (scored) | accuracy (generated) | invalid rate | logreg | best baseline "
          "| scored rows/s | generated rows/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        for kind in args.sets.split(","):
            r = measure(kind, args, Path(workdir))
            print(f"| {r['set']} | {r['steps']} | {r['s_per_step']:.2f} | {r['accuracy']:.3f} | "
                  f"{r['generated_accuracy']:.3f} | {r['invalid_rate']:.3f} | {r['logreg']:.3f} | "
                  f"{r['best_baseline']} | {r['scored_per_s']:.1f} | {r['generated_per_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
