"""One LIFT study of each kind, run as a person runs it (`python -m lift_core study ...`), timed, and its scores per
level beside the baselines fitted under the same factor:

1. sample efficiency on moons (500 rows): 5, 10, 20, 50 and 100% of the training rows ("Quick look");
2. label noise on moons (500 rows): 0, 5, 10 and 20% of the training labels moved to another class at random
   ("Quick look");
3. feature names on the fruit example table: no names (x1, x2, ...), the names shuffled across columns, the names
   ("Quick look");
4. extrapolation on the quadratic example table (1-D regression): none and 20% of the x range held out of training
   at each end, scored on the same test rows over the whole range ("Recommended": in Quick look's 80 steps the
   model does not learn the curve at all, so there is nothing to extrapolate).

    python -m bench.bench_studies [--only sample-efficiency,...] [--model smollm2-135m] [--keep DIR]
                                  [--write-benchmarks]

One seed each. Run it alone: timings depend on anything else running.
"""

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import publish
from lift_core import synthetic
from lift_core.examples import EXAMPLE_TABLES_DIR
from lift_core.models import DEFAULT_MODEL
from lift_core.studies import Study
from lift_core.study_results import SCORE_NAMES, results, score_metric, summary

REPO_ROOT = Path(__file__).resolve().parent.parent
# (kind, table, target, the study's own flags, preset); "moons-500.csv" is made here, the others ship as examples.
STUDIES = {
    "sample-efficiency": ("moons-500.csv", "y", ["--fractions", "0.05,0.1,0.2,0.5,1"], "Quick look"),
    "label-noise": ("moons-500.csv", "y", ["--noise", "0,0.05,0.1,0.2", "--mode", "random"], "Quick look"),
    "feature-names": ("fruit.csv", "fruit", ["--names", "none,shuffled,correct"], "Quick look"),
    "extrapolation": ("quadratic.csv", "y", ["--ends", "0,0.2"], "Recommended"),
}


def table_path(name: str, folder: Path) -> Path:
    if name == "moons-500.csv":
        path = folder / name
        synthetic.make_classification("moons", n=500, seed=0).to_csv(path, index=False)
        return path
    return EXAMPLE_TABLES_DIR / name


def study_command(kind: str, table: Path, model: str, out: Path) -> list[str]:
    _, target, flags, preset = STUDIES[kind]
    return ["python", "-m", "lift_core", "study", "--kind", kind, "--data", str(table), "--target", target, *flags,
            "--preset", preset, "--model", model, "--out", str(out)]


def run_one(kind: str, model: str, folder: Path, reuse: bool) -> dict:
    table_name = STUDIES[kind][0]
    table = table_path(table_name, folder)
    command = study_command(kind, table, model, folder / kind)
    if reuse and Study(folder / kind).exists() and Study(folder / kind).finished():
        seconds = span_seconds(Study(folder / kind))
    else:
        started = time.perf_counter()
        finished = subprocess.run([sys.executable, *command[1:]], cwd=REPO_ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if finished.returncode:
            raise SystemExit(f"{kind} failed:\n{finished.stderr[-2000:]}")
        print(finished.stdout, flush=True)
    shown = study_command(kind, Path(table_name) if table_name.startswith("moons") else
                          Path("assets/examples") / table_name, model, Path(f"studies/{kind}"))
    return {"kind": kind, "study": Study(folder / kind), "seconds": seconds, "command": shlex.join(shown)}


def span_seconds(study: Study) -> float:
    """A finished study's wall time from its folder: its creation to its last run's end (its last baselines, a few
    seconds, not counted)."""
    ends = [entry["time"] for run in study.runs() for entry in run.status()["history"] if entry["state"] == "completed"]
    return max(ends) - study.created()


def markdown(measured: dict) -> str:
    study = measured["study"]
    table = summary(results(study))
    methods = list(dict.fromkeys(table["method"]))
    levels = list(dict.fromkeys(table["level"]))
    cells = {(row.level, row.method): f"{row.mean:.3f}" for row in table.itertuples()}
    lines = [f"**{measured['kind']}**: `{measured['command']}`; {len(study.run_names())} runs in "
             f"{measured['seconds'] / 60:.1f} min; {SCORE_NAMES[score_metric(study)]}.", "",
             f"| {study.spec().factor()} | " + " | ".join(methods) + " |",
             "|---" * (len(methods) + 1) + "|"]
    lines += [f"| {level} | " + " | ".join(cells.get((level, method), "–") for method in methods) + " |"
              for level in levels]
    return "\n".join(lines)


def cpu_flags() -> str:
    with open("/proc/cpuinfo") as info:
        flags = next((line.split(":")[1].split() for line in info if line.startswith("flags")), [])
    return " ".join(flag for flag in ("avx512f", "avx512_bf16", "avx2") if flag in flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated study kinds (default: all four)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--keep", help="make the studies in this folder and keep them (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="with --keep: a study already finished there is reported "
                                                              "from its folder (its wall time from its run records)")
    parser.add_argument("--write-benchmarks", action="store_true")
    args = parser.parse_args()
    kinds = args.only.split(",") if args.only else list(STUDIES)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(args.keep or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        measured = [run_one(kind, args.model, folder, args.reuse) for kind in kinds]
        threads = os.environ.get("OMP_NUM_THREADS", "all")
        header = (f"`python -m bench.bench_studies` on {os.cpu_count()} cores ({platform.machine()}; CPU flags: "
                  f"{cpu_flags()}), {args.model} on the CPU, torch threads: {threads}, one seed; moons-500.csv is "
                  "`python -m lift_core synth --kind moons --n 500 --out moons-500.csv`.")
        publish("studies", "\n\n".join([header, *map(markdown, measured)]), args.write_benchmarks)


if __name__ == "__main__":
    main()
