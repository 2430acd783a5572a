"""Load: many web-app sessions at once while one training runs on the same server.

    python -m bench.bench_load [--clients 20] [--duration 60] [--model smollm2-135m] [--runs-dir DIR]
                               [--variants app,threads]

The server is app.py's own `main()` (so `app.queue(default_concurrency_limit=4)` and every other launch setting are
the shipped ones), in a subprocess on a free port with its own runs folder: the client threads must not share the
server's GIL, as browsers never do. First a `tiny` run is trained (the finished run the clients draw boundaries of),
then one training of `--model` on a 500-row moons table is started through /start, and the clients open their
sessions while it loads. Once it logs its first loss, every client (its own gradio_client session, its own table)
loops over the Prompt tab's /preview_prompts, the Data tab's /select and the Train tab's /status with random pauses,
draws a small boundary of the tiny run on some loops (/boundary, one at a time per server), and presses Start once.
Afterwards the training is stopped through /stop and the server closed.

Measured: client-side latency per endpoint; inside the server, each handler's wall and CPU time and how many ran at
once; CPU seconds of the server, the training, the clients and everything else on the machine; how long the
server's threads waited for a core; Start's answers; the training processes seen (sampled twice a second) and the
run folders launched. Writes the `load` section of BENCHMARKS.md and bench/results/load.json.

`--variants` runs the measurement once per named variant (see VARIANTS), each with a fresh server: bench-only
monkeypatches applied before app.main() (the training's priority, concurrency limits, torch threads) or less load,
to find out what slows the pages down. Nothing in lift_ui, lift_core or app.py is changed.
"""

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
LOOP_ENDPOINTS = ("preview_prompts", "select", "status")
TIMED_ENDPOINTS = LOOP_ENDPOINTS + ("start", "boundary")
FEATURES = ["x1", "x2"]
TEMPLATES = ("lift", "names", "sentence")
GOAL_S = 1.0
BOUNDARY_RUN = "boundary-tiny"
# name: how the variant differs from app.py as shipped. Server patches: nice (the training subprocess's niceness,
# its autogroup's too), unlimited (no concurrency limit on the looping endpoints), queue_limit (the queue's
# default_concurrency_limit), torch_threads (OMP_NUM_THREADS of the server,
# inherited by its trainings: half the cores, as app.py could set it). Less load: training False (no training, and no
# client presses Start), boundary False (no boundaries drawn).
VARIANTS = {
    "app": {},
    "nice": {"nice": 10},  # the training subprocess at nice 10, its autogroup too
    "unlimited": {"unlimited": True},
    "no-boundary": {"boundary": False},
    "no-training": {"training": False},
    "threads": {"torch_threads": 1},
}


# ---- the server side: app.py's main() with optional bench-only patches --------------------------------------

def serve(args) -> None:
    """Runs app.main() in this (sub)process, after the patches the options ask for."""
    import inspect

    import gradio as gr

    import app
    from lift_core import launcher

    original_queue = gr.Blocks.queue

    def queue(self, *queue_args, **queue_kwargs):
        if args.queue_limit is not None:
            queue_kwargs["default_concurrency_limit"] = args.queue_limit
        for fn in self.fns.values():
            if args.unlimited and fn.api_name in LOOP_ENDPOINTS:
                fn.concurrency_limit = None
            if args.timing and fn.api_name in TIMED_ENDPOINTS:
                fn.fn = timed(fn.fn, fn.api_name, args.timing, inspect.isgeneratorfunction(fn.fn))
        return original_queue(self, *queue_args, **queue_kwargs)

    gr.Blocks.queue = queue
    if args.nice:
        # The launcher starts each training in a session of its own, and with the kernel's autogroup scheduling
        # (on here: /proc/sys/kernel/sched_autogroup_enabled) every session gets an equal share of the CPU whatever
        # the nice value of its processes: plain `nice` changes nothing then. The autogroup's own nice value
        # (/proc/self/autogroup) does. Both are set before the training's Python (and its OpenMP threads) start;
        # `exec` keeps the pid the launcher records.
        original_command = launcher.training_command
        lower = f'echo {args.nice} > /proc/self/autogroup 2>/dev/null; exec nice -n {args.nice} "$@"'
        launcher.training_command = lambda *a: ["sh", "-c", lower, "sh", *original_command(*a)]
    app.main(["--host", "127.0.0.1", "--port", str(args.port), "--runs-dir", args.runs_dir, "--model", args.model])


def timed(fn, name: str, path: str, generator: bool):
    """`fn`, appending [name, start, end, Python-thread CPU s] of each call to `path` (times from time.time(), so
    the bench can tell how many ran at once): the handler's own time, without the queue's wait. A generator (the
    boundary) is timed from its first step to its last; gradio may run each step on another thread, so its CPU is
    summed step by step."""
    lock = threading.Lock()

    def record(start: float, cpu: float) -> None:
        with lock, open(path, "a") as file:
            file.write(json.dumps([name, start, time.time(), cpu]) + "\n")

    if generator:
        @functools.wraps(fn)
        def steps(*a, **kw):
            start, cpu, iterator = time.time(), 0.0, fn(*a, **kw)
            try:
                while True:
                    step_cpu = time.thread_time()
                    try:
                        value = next(iterator)
                    except StopIteration:
                        return
                    finally:
                        cpu += time.thread_time() - step_cpu
                    yield value
            finally:
                record(start, cpu)
        return steps

    @functools.wraps(fn)
    def call(*a, **kw):
        start, cpu = time.time(), time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            record(start, time.thread_time() - cpu)
    return call


# ---- measuring ------------------------------------------------------------------------------------------------

def share_ssl_contexts() -> None:
    """gradio_client opens a new httpx client for every request, and each builds an SSL context, parsing the whole
    CA bundle: about 80 ms of CPU per call even over plain http. Twenty such clients in this process would load
    the server's two cores more than the server itself, which browsers on other machines never do. One context
    per setting serves them all here (client side only; the server is untouched)."""
    import httpx._transports.default as transports

    build = transports.create_ssl_context
    cached = functools.lru_cache(maxsize=None)(lambda verify, cert, trust_env: build(verify=verify, cert=cert,
                                                                                      trust_env=trust_env))

    def create_ssl_context(verify=True, cert=None, trust_env=True):
        try:
            return cached(verify, cert, trust_env)
        except TypeError:  # an unhashable setting: build it as httpx would
            return build(verify=verify, cert=cert, trust_env=trust_env)

    transports.create_ssl_context = create_ssl_context


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"gave up waiting for {what} after {timeout_s:.0f} s")


def answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "config", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least `share` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered) - 1e-9) - 1))]


def summary(values: list[float]) -> dict:
    return {"count": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "max": max(values) if values else None}


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def training_progress(run) -> tuple[int, float]:
    """(last step recorded, its elapsed seconds) of a training run, from its metrics rows."""
    rows = [row for row in (run.metrics() if run is not None else []) if row.get("step") and row.get("elapsed_s")]
    return (rows[-1]["step"], rows[-1]["elapsed_s"]) if rows else (0, 0.0)


def thread_schedstats(pid: int) -> dict[int, tuple[float, float]]:
    """Per thread of a process: (seconds on a CPU, seconds runnable but waiting for one), from the scheduler."""
    stats = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            on_cpu, waiting, _ = (int(value) for value in (task / "schedstat").read_text().split())
        except (OSError, ValueError):
            continue
        stats[int(task.name)] = (on_cpu / 1e9, waiting / 1e9)
    return stats


def sched_delta(before: dict, after: dict) -> dict:
    """On-CPU and run-queue-wait seconds between two thread_schedstats (threads that ended meanwhile are missed):
    a large wait means the process had work but no core to run it on."""
    on_cpu = waiting = 0.0
    for tid, (cpu, wait) in after.items():
        cpu0, wait0 = before.get(tid, (0.0, 0.0))
        on_cpu, waiting = on_cpu + cpu - cpu0, waiting + wait - wait0
    return {"on_cpu": round(on_cpu, 1), "runqueue_wait": round(waiting, 1)}


def machine_busy_s() -> float:
    """CPU seconds all cores have been busy since boot (everything but idle and iowait)."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def training_pids(runs_dir: Path) -> set[int]:
    """Live `lift_core train` processes writing into `runs_dir`."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"lift_core" in command and b"train" in command and any(str(runs_dir).encode() in part
                                                                   for part in command):
            pids.add(int(entry.name))
    return pids


class ProcessWatch(threading.Thread):
    """Samples the training processes twice a second: every pid seen, and the most alive at once."""

    def __init__(self, runs_dir: Path):
        super().__init__(daemon=True)
        self.runs_dir, self.seen, self.most_at_once, self.done = runs_dir, set(), 0, threading.Event()

    def run(self):
        while not self.done.is_set():
            alive = training_pids(self.runs_dir)
            self.seen |= alive
            self.most_at_once = max(self.most_at_once, len(alive))
            self.done.wait(0.5)


class Session(threading.Thread):
    """One user's page: preview, select, status in a loop with pauses, now and then a boundary, and one Start."""

    def __init__(self, index: int, url: str, args, go: threading.Event, stop: threading.Event, options: dict):
        super().__init__(daemon=True, name=f"client-{index}")
        self.index, self.url, self.args, self.go, self.stop = index, url, args, go, stop
        self.presses_start = options.get("training", True)
        self.boundary_share = args.boundary_share if options.get("boundary", True) else 0.0
        self.rng = random.Random(index)
        self.calls: list[tuple[str, float, float, bool]] = []  # (endpoint, start offset s, latency s, ok)
        self.errors: list[str] = []
        self.start_answer: str | None = None
        self.ready = threading.Event()
        self.client, self.window_start, self.start_at = None, 0.0, float("inf")

    def call(self, endpoint: str, *a, **kw):
        if (endpoint != "start" and self.presses_start and self.start_answer is None
                and time.monotonic() >= self.start_at):
            self.start_answer = self.call("start", target="y", model=self.args.model, quant="none") or ""
        started = time.monotonic()
        try:
            result = self.client.predict(*a, api_name=f"/{endpoint}", **kw)
            ok = True
        except Exception as error:  # noqa: BLE001 - every failure is recorded and counted
            result, ok = None, False
            self.errors.append(f"{endpoint}: {error.__class__.__name__}: {error}"[:300])
        self.calls.append((endpoint, started - self.window_start, time.monotonic() - started, ok))
        return result

    def run(self):
        from gradio_client import Client

        try:
            self.client = Client(self.url, verbose=False)
            # This session's table. Seeds differ: sessions generating the very same set at the same moment collide
            # in lift_core.files.write_atomically (its temporary name is per process, not per thread).
            self.client.predict("moons", 500, 0.1, self.index + 1, 1, api_name="/synth")
        except Exception as error:  # noqa: BLE001
            self.errors.append(f"setup: {error.__class__.__name__}: {error}"[:300])
            return
        finally:
            self.ready.set()
        self.go.wait()
        self.window_start = time.monotonic()
        self.start_at = self.window_start + self.rng.uniform(0.05, 0.6) * self.args.duration
        while not self.stop.is_set():
            self.call("preview_prompts", "y", FEATURES, "auto", self.rng.choice(TEMPLATES), "", 2)
            self.pause()
            self.call("select", "y", FEATURES, "auto")
            self.pause()
            self.call("status", False, 0)
            self.pause()
            if self.rng.random() < self.boundary_share:
                self.call("boundary", BOUNDARY_RUN, self.args.resolution, 0.2, "logreg")
                self.pause()

    def pause(self):
        self.stop.wait(self.rng.uniform(0, 2 * self.args.think))


def train_boundary_run(runs_dir: Path, log_path: Path) -> float:
    """The finished run the clients draw boundaries of: the tiny model on a 120-row moons table, as the tests'
    train_tiny helper trains it, in RUNS_DIR/boundary-tiny. Returns its training time."""
    import torch

    from lift_core import synthetic
    from lift_core.config import TrainConfig
    from lift_core.training import run_training

    table = runs_dir / "uploads" / "boundary-moons.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    synthetic.make_classification("moons", n=120, noise=0.1, seed=0).to_csv(table, index=False)
    config = TrainConfig(data=str(table), target="y", model="tiny", quant="none", epochs=3, max_steps=0,
                         batch_size=8, lr=5e-3)
    threads = torch.get_num_threads()
    started = time.monotonic()
    try:
        with open(log_path, "w") as log, contextlib.redirect_stdout(log):
            run = run_training(config, runs_dir / BOUNDARY_RUN)
    finally:
        torch.set_num_threads(threads)
    assert run.status()["state"] == "completed", run.status()
    return time.monotonic() - started


def run_variant(name: str, options: dict, args, runs_root: Path, boundary_run: Path) -> dict:
    """One server (app.main with `options`), one training started through /start, `args.clients` sessions for
    `args.duration` seconds; the training stopped and the server closed afterwards. `boundary_run` is copied into
    the variant's runs folder."""
    from gradio_client import Client

    from lift_core.runs import Run

    runs_dir = runs_root / name
    runs_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(boundary_run, runs_dir / BOUNDARY_RUN)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    timing = runs_root / f"{name}-handler-times.jsonl"
    command = [sys.executable, "-m", "bench.bench_load", "--serve", "--port", str(port), "--runs-dir", str(runs_dir),
               "--model", args.model, "--timing", str(timing)]
    if options.get("nice"):
        command += ["--nice", str(options["nice"])]
    if options.get("unlimited"):
        command += ["--unlimited"]
    if options.get("queue_limit") is not None:
        command += ["--queue-limit", str(options["queue_limit"])]
    server_log = open(runs_root / f"{name}-server.log", "w")
    environment = dict(os.environ)
    if options.get("torch_threads"):  # the server's torch, and its trainings' (they inherit the environment)
        environment |= {"OMP_NUM_THREADS": str(options["torch_threads"]),
                        "MKL_NUM_THREADS": str(options["torch_threads"])}
    server = subprocess.Popen(command, cwd=REPO_ROOT, stdout=server_log, stderr=subprocess.STDOUT,
                              start_new_session=True, env=environment)
    watch = ProcessWatch(runs_dir)
    go, stop = threading.Event(), threading.Event()
    sessions = [Session(index, url, args, go, stop, options) for index in range(args.clients)]
    result = {"variant": name, "options": options}
    training_run = None
    phases = {"begin": time.monotonic()}
    try:
        wait_for(lambda: answering(url) or server.poll() is not None, 180, "the app to answer", 0.5)
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with code {server.returncode}; see {server_log.name}")
        phases["server_up"] = time.monotonic()
        watch.start()
        training_pid = None
        if options.get("training", True):
            trainer = Client(url, verbose=False)
            trainer.predict("moons", 500, 0.1, 0, 1, api_name="/synth")
            started = time.monotonic()
            answer = trainer.predict(target="y", model=args.model, quant="none", api_name="/start")
            result["first_start"] = answer
            if not answer.startswith("Started run"):
                raise RuntimeError(f"/start refused the measured training: {answer}")
            training_run = Run(runs_dir / answer.split("`")[1])
        # The sessions open while the training loads its model.
        for session in sessions:
            session.start()
        for session in sessions:
            session.ready.wait(300)
        phases["sessions_ready"] = time.monotonic()
        if training_run is not None:
            wait_for(lambda: any(row.get("loss") is not None for row in training_run.metrics()), 300,
                     "the training's first loss point")
            result["start_to_first_loss_s"] = round(time.monotonic() - started, 1)
            training_pid = (training_run.status() or {}).get("pid")

        load_before = os.getloadavg()
        cpu_before = (machine_busy_s(), process_cpu_s(server.pid), process_cpu_s(training_pid),
                      process_cpu_s(os.getpid()))
        window_start, window_epoch = time.monotonic(), time.time()
        phases["window_start"] = window_start
        sched_before = thread_schedstats(server.pid), thread_schedstats(training_pid) if training_pid else {}
        progress_before = training_progress(training_run)
        go.set()
        time.sleep(args.duration)
        stop.set()
        window_s = time.monotonic() - window_start
        cpu_after = (machine_busy_s(), process_cpu_s(server.pid), process_cpu_s(training_pid),
                     process_cpu_s(os.getpid()))
        result["sched_s"] = {"server": sched_delta(sched_before[0], thread_schedstats(server.pid)),
                             "training": sched_delta(sched_before[1], thread_schedstats(training_pid))
                             if training_pid else None}
        result["load_average_1min"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
        if training_run is not None:
            result["training_active_at_end"] = training_run.status().get("state") in ("queued", "running")
        used = [None if a is None or b is None else round(b - a, 1) for a, b in zip(cpu_before, cpu_after)]
        if training_pid is None:
            used[2] = 0.0
        result["cpu_s"] = {"window_s": round(window_s, 1), "cores": os.cpu_count(), "machine_busy": used[0],
                           "server": used[1], "training": used[2], "clients": used[3],
                           "other": None if None in used else round(used[0] - sum(used[1:]), 1)}
        if training_run is not None:
            (step0, elapsed0), (step1, elapsed1) = progress_before, training_progress(training_run)
            result["training_progress"] = {
                "steps_at_window_start": step0, "steps_at_window_end": step1,
                "s_per_step": round((elapsed1 - elapsed0) / (step1 - step0), 2) if step1 > step0 else None}
        for session in sessions:
            session.join(120)
    finally:
        go.set()
        stop.set()
        if training_run is not None:
            stop_training(url, training_run)
        phases["stopped"] = time.monotonic()
        watch.done.set()
        close_server(server)
        server_log.close()
        phases["closed"] = time.monotonic()
    result["phases_s"] = {key: round(value - phases["begin"], 1) for key, value in phases.items()}

    calls = [call for session in sessions for call in session.calls]
    result["endpoints"] = {endpoint: summary([latency for name_, _, latency, ok in calls if name_ == endpoint and ok])
                           for endpoint in TIMED_ENDPOINTS}
    result["latencies_s"] = {endpoint: [round(latency, 3) for name_, _, latency, ok in sorted(calls, key=lambda c: c[1])
                                        if name_ == endpoint and ok] for endpoint in TIMED_ENDPOINTS}
    result["failed_calls"] = {endpoint: sum(1 for name_, *_, ok in calls if name_ == endpoint and not ok)
                              for endpoint in TIMED_ENDPOINTS}
    result["errors_sample"] = [error for session in sessions for error in session.errors][:10]
    result["handler_s"] = handler_times(timing, (window_epoch, window_epoch + args.duration))
    answers = [session.start_answer for session in sessions]
    result["sessions"] = [{"start_at_s": round(session.start_at - session.window_start, 1),
                           "start_answer": (session.start_answer or "")[:80] or None,
                           "calls": len(session.calls), "errors": len(session.errors)} for session in sessions]
    result["starts"] = {
        "accepted": int(training_run is not None) + sum(1 for answer in answers if answer and answer.startswith("Started run")),
        "refused": sum(1 for answer in answers if answer and "busy training" in answer),
        "other": sum(1 for answer in answers if answer is not None and not answer.startswith("Started run")
                     and "busy training" not in answer),
        "not_tried": sum(1 for answer in answers if answer is None) if options.get("training", True) else 0,
    }
    launched = [path for path in runs_dir.iterdir() if (path / "launcher.json").exists()]
    result["trainings"] = {
        "run_folders_launched": len(launched),
        "run_folders_with_loss": sum(1 for path in launched if any(row.get("loss") is not None
                                                                   for row in Run(path).metrics())),
        "training_processes_seen": len(watch.seen),
        "most_training_processes_at_once": watch.most_at_once,
        "final_states": sorted(Run(path).status().get("state") for path in launched),
    }
    return result


def handler_times(path: Path, window: tuple[float, float]) -> dict:
    """Per endpoint, of the handler calls that started in the window (time.time() bounds): wall and CPU
    percentiles, the CPU summed, and the most calls of it that ran at once (its concurrency limit caps that)."""
    calls: dict[str, list] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, start, end, cpu = json.loads(line)
            if window[0] <= start <= window[1]:
                calls.setdefault(name, []).append((start, end, cpu))
    result = {}
    for name, values in calls.items():
        edges = sorted([(start, 1) for start, _, _ in values] + [(end, -1) for _, end, _ in values],
                       key=lambda edge: (edge[0], edge[1]))
        running = most = 0
        for _, change in edges:
            running += change
            most = max(most, running)
        cpu = [cpu for _, _, cpu in values]
        result[name] = {**summary([end - start for start, end, _ in values]), "cpu_p50": percentile(cpu, 0.5),
                        "cpu_p95": percentile(cpu, 0.95), "cpu_total": round(sum(cpu), 1), "most_at_once": most}
    return result


def stop_training(url: str, run) -> None:
    """Stop through the app (the adapter is saved after the current step); kill the process if it lingers."""
    from gradio_client import Client

    try:
        client = Client(url, verbose=False)
        client.predict(api_name="/stop")
        wait_for(lambda: run.status().get("state") not in ("queued", "running"), 120, "the training to stop", 1)
    except Exception as error:  # noqa: BLE001 - a training must never be left behind
        print(f"warning: stopping through the app failed ({error}); killing the training process")
    pid = run.status().get("pid") or (json.loads(run.file("launcher.json").read_text()).get("pid"))
    try:  # it writes its final state a moment before it exits
        wait_for(lambda: pid not in training_pids(run.path.parent), 60, "the training process to exit", 0.5)
    except TimeoutError:
        print(f"warning: the training process {pid} outlived its run; killing it")
        os.kill(pid, signal.SIGKILL)


def close_server(server: subprocess.Popen) -> None:
    """Ctrl-C, as in a terminal; then harder. Everything measured is already on disk."""
    for send in (lambda: server.send_signal(signal.SIGINT), server.terminate, server.kill):
        if server.poll() is not None:
            return
        send()
        try:
            server.wait(3)
        except subprocess.TimeoutExpired:
            pass


# ---- reporting ------------------------------------------------------------------------------------------------

def fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def variant_label(result: dict) -> str:
    options = result["options"]
    parts = []
    if options.get("nice"):
        parts.append(f"training subprocess at nice {options['nice']}, its autogroup too")
    if options.get("unlimited"):
        parts.append("no concurrency limit on status/preview/select")
    if options.get("queue_limit") is not None:
        parts.append(f"default_concurrency_limit={options['queue_limit']}")
    if options.get("torch_threads"):
        parts.append(f"OMP_NUM_THREADS={options['torch_threads']} for the server and its training")
    label = "app.py as shipped" if not parts else "bench patch: " + ", ".join(parts)
    if not options.get("training", True):
        label += ", no training running"
    if not options.get("boundary", True):
        label += ", no boundaries drawn"
    return label


def markdown(report: dict) -> str:
    machine, settings = report["machine"], report["settings"]
    lines = [
        f"`{report['command']}`: {settings['clients']} gradio_client sessions (threads of the bench process, each "
        f"its own session) against app.py's `main()` served in a subprocess, for {settings['duration_s']:.0f} s "
        f"while one `{settings['model']}` training (500-row moons, shipped defaults) runs. Each session loops "
        f"preview → select → status with a random pause of 0-{2 * settings['think_s']:g} s after each call, draws a "
        f"{settings['resolution']}x{settings['resolution']} boundary of a finished `tiny` run on "
        f"{settings['boundary_share']:.0%} of its loops, and presses Start once. Machine: {machine['cores']} cores "
        f"(os.cpu_count), {machine['platform']}, torch {machine['torch']} with {machine['torch_threads']} threads "
        f"per process (server and training alike); shared with other work: 1-minute load average "
        f"{machine['load_average_1min_before']:.2f} just before the run.",
        "",
        "Latency in seconds as a client sees it (queue wait included); *handler* is the wall time inside the app's "
        "function on the server, *handler CPU* the CPU time of its Python thread (torch's own threads not counted):",
        "",
    ]
    for result in report["variants"]:
        cpu, starts, trainings = result["cpu_s"], result["starts"], result["trainings"]
        sched, handlers = result["sched_s"]["server"], result["handler_s"]
        progress = result.get("training_progress", {})
        limit_note = ("4, the queue's default, /boundary 1" if not result["options"].get("unlimited") else
                      "nothing for status/preview/select, /boundary 1")
        lines += [
            f"**{variant_label(result)}**" + (f" (`--variants {result['variant']}`)" if len(report["variants"]) > 1
                                              else ""),
            "",
            "| endpoint | calls | failed | p50 s | p95 s | max s | handler p50 s | handler CPU p50 s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for endpoint in TIMED_ENDPOINTS:
            stats, handler = result["endpoints"][endpoint], result["handler_s"].get(endpoint, {})
            lines.append(f"| /{endpoint} | {stats['count']} | {result['failed_calls'][endpoint]} | "
                         f"{fmt(stats['p50'])} | {fmt(stats['p95'])} | {fmt(stats['max'])} | "
                         f"{fmt(handler.get('p50'), 3)} | {fmt(handler.get('cpu_p50'), 3)} |")
        goal = all((result["endpoints"][name]["p95"] or 99) < GOAL_S for name in ("status", "preview_prompts"))
        lines += [
            "",
            f"- Goal (p95 of /status and /preview_prompts under {GOAL_S:g} s): **{'met' if goal else 'not met'}**.",
        ]
        if result["options"].get("training", True):
            lines += [
                f"- Starts: **{starts['accepted']} accepted** (the measured training) and **{starts['refused']} "
                f"refused** as busy" + (f", {starts['other']} other answers" if starts["other"] else "")
                + (f", {starts['not_tried']} not tried" if starts["not_tried"] else "") + ".",
                f"- Trainings: {trainings['run_folders_launched']} run folder launched, "
                f"{trainings['run_folders_with_loss']} trained, {trainings['training_processes_seen']} training "
                f"process seen (at most {trainings['most_training_processes_at_once']} at once), ended "
                f"{', '.join(trainings['final_states'])} (stopped by the bench). It had recorded step "
                f"{progress['steps_at_window_start']} when the window opened and step {progress['steps_at_window_end']}"
                f" when it closed" + (f" ({progress['s_per_step']:.1f} s per step)" if progress["s_per_step"] else "")
                + ".",
            ]
        lines += [
            f"- CPU over the {cpu['window_s']:.0f} s window ({cpu['cores']} cores = {cpu['cores'] * cpu['window_s']:.0f}"
            f" core-s): training {fmt(cpu['training'], 0)}, server {fmt(cpu['server'], 0)}, clients "
            f"{fmt(cpu['clients'], 0)}, everything else on the machine {fmt(cpu['other'], 0)} core-s. The server's "
            f"threads were runnable but waiting for a core {fmt(sched['runqueue_wait'], 0)} s in all (against "
            f"{fmt(sched['on_cpu'], 0)} s on a core); most handlers at once: "
            + ", ".join(f"/{name} {handlers[name]['most_at_once']}" for name in TIMED_ENDPOINTS if name in handlers)
            + f" (each limited to {limit_note}).",
            "",
        ]
    return "\n".join(lines).rstrip()


def machine_info() -> dict:
    import torch

    return {"cores": os.cpu_count(), "platform": f"{platform.system()} {platform.machine()}",
            "python": platform.python_version(), "torch": torch.__version__.split("+")[0],
            "torch_threads": torch.get_num_threads(), "load_average_1min_before": os.getloadavg()[0]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60, help="measurement window in seconds, per variant")
    parser.add_argument("--model", default=None, help="model of the measured training (default: the app's default, "
                        "smollm2-135m)")
    parser.add_argument("--runs-dir", default=None, help="where the runs go (default: a temporary folder, removed)")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause in seconds after each call")
    parser.add_argument("--boundary-share", type=float, default=0.1, help="share of loops that draw a boundary")
    parser.add_argument("--resolution", type=int, default=10, help="boundary grid points per side")
    parser.add_argument("--variants", default="app", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--results", default=str(RESULTS), help="where the raw JSON goes (default: %(default)s)")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone (the JSON is still written)")
    # The server subprocess (internal).
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--timing", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--nice", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--unlimited", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--queue-limit", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.model is None:
        from lift_core.models import DEFAULT_MODEL

        args.model = DEFAULT_MODEL
    if args.serve:
        serve(args)
        return

    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    machine = machine_info()
    runs_root = Path(args.runs_dir or tempfile.mkdtemp(prefix="lift-load-")).resolve()
    share_ssl_contexts()
    started = time.monotonic()
    try:
        tiny_s = train_boundary_run(runs_root / "shared", runs_root / "tiny-run.log")
        results = [run_variant(name, VARIANTS[name], args, runs_root, runs_root / "shared" / BOUNDARY_RUN)
                   for name in names]
    finally:
        if not args.runs_dir:
            shutil.rmtree(runs_root, ignore_errors=True)
    command = "python -m bench.bench_load" + "".join(
        f" --{flag} {value}" for flag, value in (("clients", args.clients), ("duration", f"{args.duration:g}"),
                                                  ("variants", args.variants))
        if (flag, value) != ("variants", "app"))
    report = {
        "command": command,
        "settings": {"clients": args.clients, "duration_s": args.duration, "model": args.model,
                     "think_s": args.think, "boundary_share": args.boundary_share, "resolution": args.resolution},
        "machine": machine,
        "tiny_run_train_s": round(tiny_s, 1),
        "total_s": round(time.monotonic() - started, 1),
        "variants": results,
    }
    text = markdown(report)
    print(text)
    print(f"\n(total {report['total_s']:.0f} s)")
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    text_json = json.dumps(report, indent=2)
    # Lists of numbers (the raw latencies) on one line each.
    text_json = re.sub(r"\[\s+([-\d.eE,\s]+?)\s+\]", lambda match: "[" + " ".join(match.group(1).split()) + "]",
                       text_json)
    Path(args.results).write_text(text_json + "\n")
    if not args.no_write:
        from bench.report import write_section

        write_section("load", text)


if __name__ == "__main__":
    main()
