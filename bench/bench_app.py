"""The two waits a web-app user feels: Start to the first loss point, and a 60x60 decision boundary.

    python -m bench.bench_app [--model smollm2-135m] [--resolution 60]

Uses the app's own launcher (a training subprocess, as behind the Start button) and the Explore tab's
engine call. Prints Markdown table rows for BENCHMARKS.md. Run it alone: timings depend on the machine.
"""

import argparse
import tempfile
import time
from pathlib import Path

from lift_core import synthetic
from lift_core.boundary import model_boundary
from lift_core.config import TrainConfig
from lift_core.launcher import TrainingLauncher


def wait_for(condition, timeout_s: float, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll_s)
    raise TimeoutError("gave up waiting")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--resolution", type=int, default=60)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        table = Path(workdir) / "moons.csv"
        synthetic.make_classification("moons", n=500, noise=0.1, seed=0).to_csv(table, index=False)
        launcher = TrainingLauncher(Path(workdir) / "runs")
        config = TrainConfig(data=str(table), target="y", model=args.model, quant="none", max_steps=args.steps)
        started = time.monotonic()
        run = launcher.start(config)
        wait_for(lambda: any(row.get("loss") is not None for row in run.metrics()), 600)
        first_point = time.monotonic() - started
        wait_for(lambda: not launcher.active_run() and run.status()["state"] != "queued", 1800, 1.0)
        accuracy = (run.eval_results() or {}).get("accuracy")
        print(f"| Start to first loss point | {args.model} | {first_point:.1f} s |")
        started = time.monotonic()
        grid = model_boundary(run, resolution=args.resolution, margin=0.2)
        boundary_s = time.monotonic() - started
        print(f"| {args.resolution}x{args.resolution} boundary ({len(grid)} points, incl. model load) | {args.model} "
              f"| {boundary_s:.1f} s ({len(grid) / boundary_s:.0f} points/s; run accuracy {accuracy}) |")


if __name__ == "__main__":
    main()
