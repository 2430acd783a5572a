"""Load: many web-app sessions at once while one training runs on the same server.

    python -m bench.bench_load [--clients 20] [--duration 60] [--model smollm2-135m] [--write-benchmarks]

`python app.py` as shipped serves a temporary runs folder from a subprocess (the clients, threads of this process,
must not share its GIL, as browsers never do). One training of `--model` on a 500-row moons table is started
through /start; once it logs its first loss, every client (its own session and table) loops over /preview_prompts,
/select and /status with random pauses, draws a small /boundary of a finished `tiny` run on some loops, and presses
Start once. Measured: each endpoint's latency as a client sees it, Start's answers, and the runs the launcher
reported training. Prints the `load` section of BENCHMARKS.md; --write-benchmarks also writes it there, and the raw
latencies to bench/results/load.json.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from gradio_client import Client

from bench.report import publish
from lift_core import models
from lift_core.launcher import TrainingLauncher
from tests.helpers import REPO_ROOT, free_port, train_tiny, wait_for

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
ENDPOINTS = ("preview_prompts", "select", "status", "start", "boundary")
FEATURES, TEMPLATES, BOUNDARY_RUN = ["x1", "x2"], ("lift", "names", "sentence"), "boundary-tiny"
# The mean pause after each call (s), the share of loops that draw a boundary, and its grid points per side.
THINK_S, BOUNDARY_SHARE, RESOLUTION = 1.0, 0.1, 10
GOAL_S = 1.0  # for the p95 of /status and /preview_prompts, which every open page calls again and again
STOP_WAIT_S = 120  # one step of a 135M model on two busy cores can take a minute

# No telemetry from the clients, and no hub look-ups from the server and its training (read when used).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def open_session(url: str, seed: int) -> Client:
    """A page of its own, with a moons table of its own in its Data tab."""
    # Plain http to this machine: nothing to verify, and gradio_client opens an httpx client per request, each of
    # which would otherwise parse the CA bundle (~25 ms of CPU) on the cores the server needs.
    client = Client(url, verbose=False, ssl_verify=False)
    client.predict("moons", 500, 0.1, seed, 1, api_name="/synth")
    return client


def browse(client: Client, rng: random.Random, args, stop: threading.Event, calls: list) -> str | None:
    """One user until `stop`: preview, select and status in a loop with pauses, now and then a boundary, and Start
    pressed once at a random moment. Appends (endpoint, latency s, error or None) to `calls`; returns Start's
    answer, None where the window closed first."""
    def call(endpoint: str, *inputs, **named):
        started = time.monotonic()
        try:
            answer, error = client.predict(*inputs, api_name=f"/{endpoint}", **named), None
        except Exception as failure:  # noqa: BLE001 - every failure is counted, and the first few reported
            answer, error = None, f"/{endpoint}: {failure.__class__.__name__}: {failure}"[:300]
        calls.append((endpoint, time.monotonic() - started, error))
        return answer

    start_at, start_answer = time.monotonic() + rng.uniform(0.05, 0.6) * args.duration, None
    while not stop.is_set():
        if start_answer is None and time.monotonic() >= start_at:
            start_answer = call("start", target="y", model=args.model, quant="none") or ""  # pressed once only
        loop = [("preview_prompts", ("y", FEATURES, "auto", rng.choice(TEMPLATES), "", 2)),
                ("select", ("y", FEATURES, "auto")), ("status", (False, 0))]
        if rng.random() < BOUNDARY_SHARE:
            loop.append(("boundary", (BOUNDARY_RUN, RESOLUTION, 0.2, "logreg")))
        for endpoint, inputs in loop:
            call(endpoint, *inputs)
            if stop.wait(rng.uniform(0, 2 * THINK_S)):
                break
    return start_answer


def answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "config", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def last_step(run) -> int:
    return max((row.get("step") or 0 for row in run.metrics()), default=0)


def start_outcome(answer: str | None) -> str:
    if answer is None:
        return "not_tried"
    return "accepted" if answer.startswith("Started run") else "refused" if "busy training" in answer else "other"


def latency_summary(latencies: list[float], failed: int) -> dict:
    """Nearest-rank percentiles: each is a latency some call really had."""
    summary = {"calls": len(latencies), "failed": failed, "p50": None, "p95": None, "max": None}
    if latencies:
        p50, p95 = np.percentile(latencies, [50, 95], method="inverted_cdf")
        summary |= {"p50": float(p50), "p95": float(p95), "max": max(latencies)}
    return summary


def measure_window(args, url: str, launcher: TrainingLauncher) -> dict:
    """Starts the measured training, opens the sessions while it loads its model, and lets them browse for
    args.duration seconds from its first loss on."""
    trainer = open_session(url, seed=0)
    pressed = time.monotonic()
    answer = trainer.predict(target="y", model=args.model, quant="none", api_name="/start")
    training = launcher.active_run()
    if training is None:
        raise RuntimeError(f"/start did not start the measured training: {answer}")
    clients = [open_session(url, seed) for seed in range(1, args.clients + 1)]
    wait_for(training.metrics, lambda rows: any(row.get("loss") is not None for row in rows), timeout=600,
             what="the training's first loss", interval=0.5)
    first_loss_s, steps_before = time.monotonic() - pressed, last_step(training)
    calls, stop = [], threading.Event()  # calls: (endpoint, latency s, error or None), from every session
    with ThreadPoolExecutor(len(clients)) as pool:
        browsing = [pool.submit(browse, client, random.Random(seed), args, stop, calls)
                    for seed, client in enumerate(clients)]
        time.sleep(args.duration)
        stop.set()
        starts = Counter(start_outcome(future.result()) for future in browsing)
    starts["accepted"] += 1  # the measured training
    answered = {endpoint: [round(s, 3) for name, s, error in calls if name == endpoint and not error]
                for endpoint in ENDPOINTS}
    failed = Counter(name for name, _, error in calls if error)
    return {"start_to_first_loss_s": round(first_loss_s, 1), "steps": [steps_before, last_step(training)],
            "still_training": launcher.active_run() is not None, "starts": dict(starts),
            "endpoints": {endpoint: latency_summary(answered[endpoint], failed[endpoint]) for endpoint in ENDPOINTS},
            "latencies_s": answered, "errors_sample": [error for *_, error in calls if error][:10]}


def stop_training(launcher: TrainingLauncher) -> None:
    """Stop as the Stop button does (the run saves and ends after its current step); a run still going
    STOP_WAIT_S later is stopped again, which the launcher does by force, so no training outlives the bench."""
    if launcher.stop() is None:
        return
    try:
        wait_for(launcher.active_run, lambda run: run is None, timeout=STOP_WAIT_S, what="the training to stop")
    except AssertionError:
        launcher.stop()
        wait_for(launcher.active_run, lambda run: run is None, timeout=30, what="the training to be killed")


def measure(args, folder: Path) -> dict:
    """app.py served on FOLDER/runs for one measurement window; the training stopped and the server closed after."""
    runs_dir = folder / "runs"
    train_tiny(folder, run_dir=runs_dir / BOUNDARY_RUN)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = folder / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--runs-dir",
                                   str(runs_dir), "--model", args.model], cwd=REPO_ROOT, stdout=log,
                                  stderr=subprocess.STDOUT)
    launcher = TrainingLauncher(runs_dir)
    try:
        wait_for(lambda: server.poll() is not None or answering(url), timeout=180, what="the app to answer",
                 interval=0.5)
        if server.poll() is not None:
            raise RuntimeError(f"app.py exited with code {server.returncode}:\n{log_path.read_text()[-3000:]}")
        return measure_window(args, url, launcher)
    finally:  # the server first: the launcher stops the training from the runs folder alone
        server.send_signal(signal.SIGINT)  # Ctrl-C, as in a terminal
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        stop_training(launcher)


def fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(report: dict) -> str:
    endpoints, starts, steps = report["endpoints"], report["starts"], report["steps"]
    goal = all((endpoints[name]["p95"] or 99) < GOAL_S for name in ("status", "preview_prompts"))
    others = "".join(f", {starts[key]} {key.replace('_', ' ')}" for key in ("other", "not_tried") if starts.get(key))
    return "\n".join([
        f"`{report['command']}`. Machine: {report['machine']}.",
        "",
        "Latency in seconds as a client sees it (queue wait included):",
        "",
        "| endpoint | calls | failed | p50 s | p95 s | max s |",
        "|---|---|---|---|---|---|",
        *(f"| /{name} | {stats['calls']} | {stats['failed']} | {fmt(stats['p50'])} | {fmt(stats['p95'])} | "
          f"{fmt(stats['max'])} |" for name, stats in endpoints.items()),
        "",
        f"- Goal (p95 of /status and /preview_prompts under {GOAL_S:g} s): **{'met' if goal else 'not met'}**.",
        f"- Starts: **{starts.get('accepted', 0)} accepted** (the measured training included) and "
        f"**{starts.get('refused', 0)} refused** as busy{others}.",
        f"- Training: first loss {report['start_to_first_loss_s']:g} s after Start; step {steps[0]} recorded when the "
        f"window opened and step {steps[1]} when it closed, {'still' if report['still_training'] else 'no longer'} "
        "training then.",
    ])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60, help="measurement window in seconds")
    parser.add_argument("--model", default=models.DEFAULT_MODEL, help="model of the measured training")
    parser.add_argument("--write-benchmarks", action="store_true",
                        help=f"write BENCHMARKS.md's load section and {RESULTS.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    machine = (f"{models.hardware_summary()}, torch {torch.__version__.split('+')[0]}, torch threads per process: "
               f"{torch.get_num_threads()}; 1-minute load average {os.getloadavg()[0]:.2f} just before the run")
    with tempfile.TemporaryDirectory(prefix="lift-load-") as folder:
        report = {"command": f"python -m bench.bench_load --clients {args.clients} --duration {args.duration:g} "
                             f"--model {args.model}", "machine": machine, **measure(args, Path(folder))}
    publish("load", markdown(report), args.write_benchmarks)
    if args.write_benchmarks:
        RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
