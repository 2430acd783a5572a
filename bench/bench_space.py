"""What a visitor of the Space demo waits for, on this machine:

1. opening Evaluate and Explore on a shipped example run: the app served as a Space serves it (multi-user, the
   shipped examples), asked through its API as the tabs ask on opening (/saved_results, /saved_maps), timed per
   call on a fresh server and visitor, for every example run;
2. one click on an example table to a finished "Quick look" run: the table loaded through /load_example, then the
   preset's training of the default model started through the app's launcher (the subprocess behind Start) and
   timed until its test results are saved.

    python -m bench.bench_space [--tables moons.csv,fruit.csv] [--write-benchmarks]

Run it alone: timings depend on the machine and on anything else running.
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from bench.report import publish
from lift_core.access import VisitorLimits
from lift_core.boundary import DEFAULT_BASELINE, DEFAULT_MARGIN, explorable_features
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.examples import EXAMPLE_RUNS_DIR, EXAMPLE_TABLES
from lift_core.models import DEFAULT_MODEL
from lift_core.presets import PRESETS
from lift_core.runs import Run

QUICK_LOOK = "Quick look"


def serve(runs_dir: Path):
    """The app as app.py serves it on a Space, on a free port; returns (app, url)."""
    import socket

    from lift_ui import build_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = build_app(runs_dir, DEFAULT_MODEL, "none", allowed_models=[DEFAULT_MODEL], examples_dir=EXAMPLE_RUNS_DIR,
                    limits=VisitorLimits(), on_space=True)
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return app, f"http://127.0.0.1:{port}/"


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def example_rows(url: str) -> list[str]:
    """Per example run: seconds to its evaluation and to its saved maps, each for a new visitor."""
    from gradio_client import Client

    rows = []
    for example in EXAMPLE_TABLES.values():
        run = Run(EXAMPLE_RUNS_DIR / example.run_name, read_only=True)
        visitor = Client(url, verbose=False)
        *_, evaluated = timed(lambda: visitor.predict(run.name, api_name="/saved_results"))
        try:
            features = explorable_features(run)
        except LiftError:
            rows.append(f"| {run.name} | {evaluated:.2f} | – (no map: text features) |")
            continue
        task = run.dataset_info().task
        settings = (60, DEFAULT_MARGIN[len(features)], DEFAULT_BASELINE[task], False)
        maps, drawn = timed(lambda: visitor.predict(run.name, *settings, api_name="/saved_maps"))
        shown = "no model was loaded" in maps[-1]
        rows.append(f"| {run.name} | {evaluated:.2f} | {drawn:.2f}{'' if shown else ' (NOT from saved maps)'} |")
    return rows


def quick_look_rows(url: str, runs_dir: Path, tables: list[str]) -> list[str]:
    """Per example table: seconds from the click to the loaded table, then to the finished Quick look run."""
    from gradio_client import Client

    from lift_core.launcher import TrainingLauncher

    launcher = TrainingLauncher(runs_dir / "quick")
    rows = []
    for name in tables:
        example = next(example for example in EXAMPLE_TABLES.values() if example.file == name)
        visitor = Client(url, verbose=False)
        _, loaded = timed(lambda: visitor.predict(name, api_name="/load_example"))
        config = TrainConfig(data=str(example.path), target=example.target, template=example.template,
                             model=DEFAULT_MODEL, quant="none", **PRESETS[QUICK_LOOK].overrides)
        started = time.perf_counter()
        run = launcher.start(config)
        while launcher.active_run() is not None or launcher.finishing(run) or run.status().get("state") == "queued":
            time.sleep(0.5)
        trained = time.perf_counter() - started
        results = run.eval_results() or {}
        score = next((f"{key} {results[key]:.3f}" for key in ("accuracy", "rmse") if key in results), "no results")
        rows.append(f"| {name} | {loaded:.2f} | {trained / 60:.1f} min | {run.status().get('state')}, {score} |")
    return rows


def markdown(example_lines: list[str], quick_lines: list[str]) -> str:
    flags = " ".join(flag for flag in ("avx512f", "avx512_bf16", "avx2") if flag in Path("/proc/cpuinfo").read_text())
    return "\n".join([
        f"`python -m bench.bench_space` on {os.cpu_count()} cores ({platform.processor() or platform.machine()}; "
        f"CPU flags: {flags}), {DEFAULT_MODEL} on the CPU, the app served as on a Space (multi-user, examples).",
        "",
        "| example run | Evaluate: seconds to the test results | Explore: seconds to the saved maps |",
        "|---|---|---|",
        *example_lines,
        "",
        f"| example table | click to loaded table, s | {QUICK_LOOK} run, start to test results | result |",
        "|---|---|---|---|",
        *quick_lines,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default="moons.csv,fruit.csv",
                        help="example tables to train a Quick look on ('' for none)")
    parser.add_argument("--write-benchmarks", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        app, url = serve(Path(workdir) / "runs")
        try:
            tables = [name for name in args.tables.split(",") if name]
            table = markdown(example_rows(url), quick_look_rows(url, Path(workdir), tables))
        finally:
            app.close()
    publish("space", table, args.write_benchmarks)


if __name__ == "__main__":
    main()
