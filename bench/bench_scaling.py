"""How a training run grows with the table, and what 4-bit saves in memory.

    python -m bench.bench_scaling [--model smollm2-135m] [--steps 6] [--rows 100,200,400,800] [--write-benchmarks]

Each measurement is a `python -m lift_core train` subprocess (as the app launches it) on moons, with the same
few optimizer steps, so its wall time splits into what grows with the table (tokenizing, the validation passes,
the test evaluation) and what does not (model loading, the steps). Peak resident memory is the subprocess's
ru_maxrss. Run it alone: timings depend on everything else on the machine.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import publish
from lift_core import synthetic
from lift_core.runs import Run

REPO_ROOT = Path(__file__).resolve().parent.parent


def train(folder: Path, model: str, rows: int, steps: int, quant: str) -> dict:
    """Wall seconds, peak resident MiB, seconds per step and test-evaluation seconds of one training process."""
    table = folder / f"moons-{rows}.csv"
    synthetic.make_classification("moons", n=rows, noise=0.1, seed=0).to_csv(table, index=False)
    out = folder / f"run-{rows}-{quant}"
    command = [sys.executable, "-m", "lift_core", "train", "--data", str(table), "--target", "y", "--model", model,
               "--quant", quant, "--max-steps", str(steps), "--epochs", "0", "--out", str(out)]
    started = time.perf_counter()
    with open(folder / f"log-{rows}-{quant}.txt", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        # wait4 gives this one process's own peak, where RUSAGE_CHILDREN would give the largest of them all.
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training {rows} rows ({quant}) failed:\n{(folder / f'log-{rows}-{quant}.txt').read_text()}")
    run = Run(out)
    steps_logged = [row for row in run.metrics() if row.get("total_steps")]
    evaluation = run.eval_results()
    return {"seconds": seconds, "peak_mib": usage.ru_maxrss / 1024,
            "step_s": steps_logged[-1]["elapsed_s"] / steps_logged[-1]["step"],
            "eval_s": evaluation["eval_seconds"], "n_test": evaluation["n_test"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rows", default="100,200,400,800")
    parser.add_argument("--write-benchmarks", action="store_true")
    args = parser.parse_args()
    sizes = [int(value) for value in args.rows.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        by_rows = {rows: train(Path(folder), args.model, rows, args.steps, "none") for rows in sizes}
        four_bit = train(Path(folder), args.model, sizes[0], args.steps, "4bit")
    lines = [f"`python -m bench.bench_scaling --model {args.model} --steps {args.steps} --rows {args.rows}` "
             f"(each a `train` subprocess with {args.steps} optimizer steps):", "",
             "| rows | quantization | wall s | s per step, with its validation pass | test rows | test evaluation s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for rows, result in [*by_rows.items(), (sizes[0], four_bit)]:
        quant = "4bit" if result is four_bit else "none"
        lines.append(f"| {rows} | {quant} | {result['seconds']:.1f} | {result['step_s']:.2f} | {result['n_test']} "
                     f"| {result['eval_s']:.1f} | {result['peak_mib']:.0f} |")
    growth = np.polyfit(sizes, [by_rows[rows]["seconds"] for rows in sizes], 1)
    lines += ["", f"Wall time ≈ {growth[1]:.0f} s + {1000 * growth[0]:.0f} ms per table row at a fixed step budget "
              "(least squares); the per-row part is the validation passes and the test evaluation."]
    table = "\n".join(lines)
    publish("scaling", table, args.write_benchmarks)


if __name__ == "__main__":
    main()
