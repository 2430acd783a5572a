"""One training process against two, through the CLI as a person runs it (`--num-processes 2` = accelerate launch).

    python -m bench.bench_processes [--smollm2-steps 30]

Both runs take the same steps on the same rows: one process at batch 8, or two processes at batch 4 each. `tiny`
trains its full 3 epochs on a 200-row two-Gaussian table; `smollm2-135m` trains a fixed number of steps on 400 rows
of moons, for its time per step. On a CPU the two processes share the cores (gloo), so this measures that the
results agree, not a speed-up; on a machine with 2 GPUs each process has its own. Rewrites BENCHMARKS.md's
"processes" section.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.report import publish
from lift_core import models, synthetic
from lift_core.runs import Run

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train(folder: Path, name: str, table: Path, processes: int, settings: dict) -> dict:
    """Runs the CLI and reads what the run recorded: steps, seconds per step, wall time, accuracy."""
    batch = 8 // processes
    flags = [part for key, value in {**settings, "batch_size": batch, "num_processes": processes}.items()
             for part in (f"--{key.replace('_', '-')}", str(value))]
    run = Run(folder / f"{name}-{processes}")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "lift_core", "train", "--data", str(table), "--target", "y",
                             *flags, "--out", str(run.path)], env={**os.environ, **ONE_THREAD},
                            capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{name} on {processes} processes failed:\n{result.stderr[-3000:]}")
    last = [row for row in run.metrics() if row.get("loss") is not None][-1]
    return {"model": name, "processes": processes, "batch": f"{processes} x {batch}", "steps": last["step"],
            "total_steps": last["total_steps"], "s_per_step": last["elapsed_s"] / last["step"], "wall_s": wall,
            "accuracy": run.eval_results()["accuracy"], "recorded": run.status().get("processes")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2-steps", type=int, default=30)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        gaussians, moons = folder / "gaussians.csv", folder / "moons.csv"
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.helpers import TINY_FAST, two_gaussians

        two_gaussians(200).to_csv(gaussians, index=False)
        synthetic.make_classification("moons", n=400, seed=0).to_csv(moons, index=False)
        tiny = {key: value for key, value in TINY_FAST.items() if key != "batch_size"}
        for processes in (1, 2):
            rows.append(train(folder, "tiny", gaussians, processes, tiny))
        smollm2 = {"model": "smollm2-135m", "quant": "none", "epochs": 0, "max_steps": args.smollm2_steps}
        for processes in (1, 2):
            rows.append(train(folder, "smollm2-135m", moons, processes, smollm2))
    table = ["| model | processes | rows per step | steps (planned) | s/step | wall s | test accuracy |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        assert row["recorded"] == row["processes"]
        table.append(f"| {row['model']} | {row['processes']} | {row['batch']} | {row['steps']} ({row['total_steps']}) "
                     f"| {row['s_per_step']:.3f} | {row['wall_s']:.0f} | {row['accuracy']:.3f} |")
    header = (f"`python -m bench.bench_processes --smollm2-steps {args.smollm2_steps}` on {os.cpu_count()} cores "
              f"({platform.machine()}), torch {torch.__version__}, {models.hardware_summary()}; one torch thread per "
              "process. s/step is the run's own training clock (model loading excluded) over its steps; wall s is "
              "the whole command, start-up and test evaluation included.")
    publish("processes", header + "\n\n" + "\n".join(table), write=True)


if __name__ == "__main__":
    main()
