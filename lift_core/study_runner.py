"""Training a study's runs: one after another in this process, or, on a machine with several GPUs, several at once,
each in a training process of its own on a GPU of its own. Each finished run's baselines are fitted on its rows."""

import contextlib
import os
import subprocess
import sys
import time

from lift_core.launcher import resume_command, training_command
from lift_core.studies import Study

POLL_S = 1.0  # how often runs trained at once are checked on


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_parallel() -> int:
    """Runs trained at once by default: one per GPU, and one on a CPU (its cores already share each run's work)."""
    return max(1, gpu_count())


def run_study(study: Study, say=print, parallel: int = 1) -> None:
    """Train every run of the study that has not finished, in order (`parallel` at once), and fit each finished
    run's baselines; what `study` and `study --resume` do. A completed run is never trained again; a stopped or
    interrupted one continues from its checkpoint, and so does a failed one that can be (once per call). A stop of
    a run, or of the study, ends the study; a run that fails is reported and the others still train."""
    study.clear_stop()
    names = study.run_names()
    pending = study.pending()
    for name in names:
        if name not in pending:
            _fit_baselines(study, name, say)
    if parallel > 1:
        _train_at_once(study, pending, parallel, say)
        return
    for name in pending:
        if study.stop_requested():
            say(f"study stopped before {name}")
            return
        say(f"run {names.index(name) + 1} of {len(names)}: {name}")
        _train_here(study, name)
        if not _after_run(study, name, say):
            return


def _train_here(study: Study, name: str) -> None:
    """Trains one run in this process, its output in the run's log."""
    from lift_core.training import resume_training, run_training

    run = study.run(name)
    run.path.mkdir(parents=True, exist_ok=True)
    # A failure is recorded in the run (its error, as `failed`), reported by _after_run; the other runs still train.
    with contextlib.suppress(Exception), run.open_log("a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        if run.exists():
            resume_training(run.path)
        else:
            run_training(study.run_config(name), run.path)


def _after_run(study: Study, name: str, say) -> bool:
    """Reports how a run ended and fits its baselines; False when it was stopped, which ends the study."""
    state = study.run(name).reconcile().get("state", "failed")
    if state == "stopped":
        say(f"study stopped during {name}; `study --resume {study.path}` continues it")
        return False
    if state == "failed":
        say(f"{name} failed: {study.run(name).status().get('error', 'see its log')}")
    _fit_baselines(study, name, say)
    return True


def _fit_baselines(study: Study, name: str, say) -> None:
    from lift_core.evaluation import cached_baselines

    run = study.run(name)
    if run.exists() and run.status().get("state") == "completed" and run.baselines() is None:
        say(f"fitting the baselines of {name} on its rows")
        cached_baselines(run)


def _train_at_once(study: Study, pending: list[str], slots: int, say) -> None:
    """Up to `slots` runs train at once, each a `train` process on GPU number slot (or sharing the CPU's cores)."""
    waiting, active, stopping = list(pending), {}, False
    while waiting or active:
        if study.stop_requested() and not stopping:
            stopping, waiting = True, []
            for name, _ in active.values():
                study.run(name).request_stop()
        for slot in [slot for slot in range(slots) if slot not in active][:len(waiting)]:
            name = waiting.pop(0)
            say(f"{name}: training on {'GPU ' + str(slot) if gpu_count() >= slots else 'the CPU'}")
            active[slot] = (name, _start_run_process(study, name, slot, slots))
        time.sleep(POLL_S)
        for slot, (name, process) in list(active.items()):
            if process.poll() is None:
                continue
            del active[slot]
            if not _after_run(study, name, say) and not stopping:
                stopping, waiting = True, []
                for other, _ in active.values():
                    study.run(other).request_stop()


def _start_run_process(study: Study, name: str, slot: int, slots: int) -> subprocess.Popen:
    run = study.run(name)
    run.path.mkdir(parents=True, exist_ok=True)
    if run.exists():
        command = resume_command(run.path)
    else:
        command = training_command(study.run_config(name), run.path, study.save_run_settings(name))
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    if gpu_count() >= slots:
        environment["CUDA_VISIBLE_DEVICES"] = str(slot)
    else:  # sharing a CPU: each process gets its share of the cores, not all of them spinning against each other
        environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // slots)))
    with run.open_log("a") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=environment)
