"""The first duration estimate against the real duration, before any run of the model on this machine.

    python -m bench.bench_estimate [--models tiny,smollm2-135m] [--tables moons,linear] [--max-steps 0]
                                   [--write-benchmarks]

For each model, on a machine where it was never timed (a fresh speeds cache) and with no past run: the rough guess
(the estimate without timing), the first estimate (the Estimate button's: a calibration of a few steps, then cached),
and the real run started through the launcher as the Train tab starts it, timed from Start to its test results.
The model's second table reuses the cached timing, scaled to that table's tokens per row. Settings are the shipped
defaults, with stop_when_perfect off so that every run trains its whole budget (the estimate says "less if the
validation accuracy is perfect sooner"). Run it alone: timings depend on everything else on the machine.
"""

import argparse
import tempfile
import time
from pathlib import Path

from bench.report import publish
from lift_core import calibration, models, synthetic
from lift_core.config import TrainConfig
from lift_core.launcher import TrainingLauncher

TABLES = {
    "moons": lambda: (synthetic.make_classification("moons", n=400, noise=0.1, seed=0), "classification, 2 features"),
    "linear": lambda: (synthetic.make_regression("linear", n=400, p=7, noise=0.1, seed=0)[0],
                       "regression, 7 features"),
}


def measure(folder: Path, model: str, table: str, max_steps: int | None) -> dict:
    frame, description = TABLES[table]()
    data = folder / f"{table}.csv"
    frame.to_csv(data, index=False)
    settings = {"max_steps": max_steps} if max_steps else {}
    config = TrainConfig(data=str(data), target="y", model=model, stop_when_perfect=0, **settings)
    launcher = TrainingLauncher(folder / f"runs-{model}-{table}")
    timings = calibration.speeds_path
    calibration.speeds_path = lambda: folder / "no-timings.json"  # the guess of a machine that timed nothing
    guess = launcher.estimate(config)
    calibration.speeds_path = timings
    timed = time.perf_counter()
    first = launcher.estimate(config, calibrate=True)
    calibration_seconds = time.perf_counter() - timed
    started = time.perf_counter()
    run = launcher.start(config)
    while launcher.active_run() is not None or launcher.finishing(run):
        time.sleep(0.5)
    real = time.perf_counter() - started
    if run.status()["state"] != "completed":
        raise SystemExit(f"{model} on {table} ended {run.status()['state']}: {run.log_tail(5)}")
    return {"model": model, "table": f"{table} ({description})", "steps": first.steps, "guess": guess.seconds,
            "first": first.seconds, "source": first.source.split(":")[0], "calibration": calibration_seconds,
            "real": real}


def cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split()
    return ", ".join(f"{flag}={flag in flags}" for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))


def markdown(rows: list[dict]) -> str:
    def seconds(value):
        return "–" if value is None else f"{value:.0f} s"

    def ratio(value, real):
        return "–" if value is None else f"{value / real:.2f}"

    lines = [f"Machine: {models.hardware_summary()}; CPU flags: {cpu_flags()}.", "",
             "| model | table | steps | rough guess (÷ real) | first estimate (÷ real) | from | timing it took "
             "| real, Start to results |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['table']} | {row['steps']} | {seconds(row['guess'])} "
                     f"({ratio(row['guess'], row['real'])}) | {seconds(row['first'])} "
                     f"({ratio(row['first'], row['real'])}) | {row['source']} | {row['calibration']:.0f} s "
                     f"| {row['real']:.0f} s |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=f"{models.TINY_MODEL},{models.SMOLLM2_MODEL}")
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--max-steps", type=int, default=0, help="0: the shipped default")
    parser.add_argument("--write-benchmarks", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lift-bench-estimate-") as folder:
        # A machine where no model was timed yet; the timing of a model's first table serves its second.
        calibration.speeds_path = lambda: Path(folder) / "speeds.json"
        for model in args.models.split(","):
            for table in args.tables.split(","):
                rows.append(measure(Path(folder), model, table, args.max_steps or None))
                print(rows[-1], flush=True)
    publish("estimate", markdown(rows), args.write_benchmarks)


if __name__ == "__main__":
    main()
