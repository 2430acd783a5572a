"""The training-memory estimate (lift_core/memory.py) against the measured peak of real training runs on the CPU.

    python -m bench.bench_memory [--write-benchmarks]

Each run is a fresh `python -m lift_core train` subprocess (the command the app launches) with a few optimizer
steps at full precision; its peak is its ru_maxrss, read by a small parent process of its own (RUSAGE_CHILDREN),
and covers loading, training and the test evaluation. The estimate is the one the Train tab shows for the same
settings. The runtime constant is measured too: the peak of a process that only imports what every training
process imports.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import transformers

from bench.report import publish
from lift_core import memory, synthetic
from lift_core.launcher import training_command
from lift_core.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
# What every training process imports before it builds anything (memory.CPU_RUNTIME_BYTES).
RUNTIME_IMPORTS = "import lift_core.training, peft; from transformers import Trainer"
# Runs argv[2:] with its output in the file argv[1], prints its peak resident KiB and exits with its code.
MEASURE = """import resource, subprocess, sys
with open(sys.argv[1], "w") as log:
    code = subprocess.call(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)"""
# (model, table, batch size, steps): the two offline models on the 2-D moons table as the tests train them, and
# SmolLM2 again on a longer regression row at a larger batch, where the activations outweigh the weights.
RUNS = (("tiny", "moons", 4, 4), ("smollm2-135m", "moons", 4, 4), ("smollm2-135m", "linear-6", 16, 3))


def write_table(folder: Path, table: str) -> str:
    path = folder / f"{table}.csv"
    if table == "moons":
        synthetic.make_classification("moons", n=60, noise=0.1, seed=0).to_csv(path, index=False)
    else:
        train, _ = synthetic.make_regression("linear", n=100, p=6, seed=0)
        train.to_csv(path, index=False)
    return str(path)


def peak_bytes(command: list[str], log_path: Path) -> int:
    """The peak resident memory of the command's own process (one torch thread, as the tests run).

    Measured from a fresh, small Python process: Linux carries the peak of the process that forks over into its
    child's ru_maxrss, so a child of this one (torch loaded) would report at least this one's size.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", MEASURE, str(log_path), *command], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stderr}{log_path.read_text()[-3000:]}")
    return int(result.stdout) * 1024


def measure_training(folder: Path, model: str, data: str, batch_size: int, steps: int) -> dict:
    """The estimate and the measured peak of one training run on this machine's CPU."""
    config = TrainConfig(data=data, target="y", model=model, quant="none", batch_size=batch_size, max_steps=steps,
                         epochs=0, eval_samples=1)
    # First: it builds an alias's folder (SmolLM2's conversion), so that the measured process only loads it.
    estimate = memory.training_memory(config)
    out = folder / f"run-{model}-{Path(data).stem}-{batch_size}"
    peak = peak_bytes(training_command(config, out), folder / f"{out.name}.log")
    shape, _ = memory.example_shape(config)
    return {"estimate": estimate, "peak": peak, "tokens": shape.tokens}


def runtime_peak(folder: Path) -> int:
    return peak_bytes([sys.executable, "-c", RUNTIME_IMPORTS], folder / "runtime.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-benchmarks", action="store_true")
    args = parser.parse_args()
    lines = [f"`python -m bench.bench_memory` on {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
             f"torch {torch.__version__.split('+')[0]}, transformers {transformers.__version__}; full precision "
             "(`--quant none`), `--epochs 0 --max-steps` as listed, one torch thread. Estimate and measured peak "
             "resident memory of the whole `train` process, in MiB:", "",
             "| model | table | batch | steps | longest example, tokens | weights | LoRA+optimizer | activations "
             "| runtime | estimate | measured peak | estimate / measured |", "|---" * 12 + "|"]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for model, table, batch_size, steps in RUNS:
            result = measure_training(folder, model, write_table(folder, table), batch_size, steps)
            estimate, peak = result["estimate"], result["peak"]
            parts = " | ".join(f"{value / MIB:.0f}" for value in (estimate.weights, estimate.lora,
                                                                   estimate.activations, estimate.runtime))
            lines.append(f"| {model} | {table} | {batch_size} | {steps} | {result['tokens']} | {parts} | "
                         f"{estimate.total / MIB:.0f} | {peak / MIB:.0f} | {estimate.total / peak:.2f} |")
            print(lines[-1], flush=True)
        runtime = runtime_peak(folder)
    lines += ["", f"The runtime constant (`memory.CPU_RUNTIME_BYTES`, {memory.CPU_RUNTIME_BYTES / MIB:.0f} MiB) is "
              f"the peak of a process that only runs `{RUNTIME_IMPORTS}`: {runtime / MIB:.0f} MiB in this run."]
    table = "\n".join(lines)
    publish("memory", table, args.write_benchmarks)


if __name__ == "__main__":
    main()
