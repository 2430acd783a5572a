"""Training a study's runs: each in a `train` process of its own, as the web app trains a run, one at a time or, on a
machine with several GPUs, one per GPU at once. Each finished run's baselines are then fitted on its training rows.

A process per run keeps one run's failure, memory and log apart from the next's; what `study` itself does is little
more than choosing which run trains next.
"""

import os
import subprocess
import time
import traceback

from lift_core.baselines import run_baselines
from lift_core.data import Splits
from lift_core.errors import LiftError
from lift_core.evaluation import run_dataset
from lift_core.launcher import resume_command, start_process, training_command
from lift_core.studies import Study

POLL_S = 1.0  # how often the training processes are checked on


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them to its children."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    named = [name.strip() for name in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if name.strip()]
    return named[:count] if named else [str(index) for index in range(count)]


def default_parallel() -> int:
    """Runs trained at once by default: one per GPU, and one on a CPU (its cores already share each run's work)."""
    return max(1, len(visible_gpus()))


def run_study(study: Study, say=print, parallel: int = 1) -> None:
    """Train every run of the study that has not finished, in order, `parallel` at once, and fit each finished run's
    baselines; what `study` and `study --resume` do. A completed run is never trained again; a stopped or
    interrupted one continues from its checkpoint, and so does a failed one that can be (once per call). A stop of
    a run, or of the study, ends the study; a run that fails is reported and the others still train."""
    gpus = visible_gpus()
    if parallel < 1 or (gpus and parallel > len(gpus)):
        raise LiftError(f"--parallel must be from 1 to the number of GPUs here ({len(gpus) or 'none: 1 on a CPU'}); "
                        f"got {parallel}.")
    for name in study.run_names():
        if name not in study.pending():
            _fit_baselines(study, name, say)
    waiting, training, stopping = study.pending(), {}, False
    while waiting or training:
        if study.stop_requested() and not stopping:
            stopping, waiting = _stop_all(study, training, say, "study stopped")
        for slot in [slot for slot in range(parallel) if slot not in training][:len(waiting)]:
            name = waiting.pop(0)
            say(f"run {study.run_names().index(name) + 1} of {len(study.run_names())}: {name}"
                + (f" (GPU {gpus[slot]})" if gpus else ""))
            training[slot] = (name, _start_run_process(study, name, gpus[slot] if gpus else None, parallel))
        time.sleep(POLL_S)
        for slot, (name, process) in list(training.items()):
            if process.poll() is None:
                continue
            del training[slot]
            if not _after_run(study, name, process.returncode, say) and not stopping:
                stopping, waiting = _stop_all(study, training, say, f"study stopped during {name}")
    if stopping:
        say(f"`study --resume {study.path}` continues it")


def _stop_all(study: Study, training: dict, say, why: str) -> tuple[bool, list]:
    """No further run starts, and every run still training is asked to stop."""
    say(why)
    for name, _ in training.values():
        study.run(name).request_stop()
    return True, []


def _start_run_process(study: Study, name: str, gpu: str | None, parallel: int) -> subprocess.Popen:
    run = study.run(name)
    if run.exists() and run.dataset_info() is None:
        run.delete()  # ended before it recorded its data: nothing to keep, and nothing a resume could continue
    run.path.mkdir(parents=True, exist_ok=True)
    if run.exists():
        command = resume_command(run.path)
    else:
        command = training_command(study.run_config(name), run.path, study.save_run_settings(name))
    environment = {}
    if gpu is not None:
        environment["CUDA_VISIBLE_DEVICES"] = gpu
    elif parallel > 1 and "OMP_NUM_THREADS" not in os.environ:
        # Sharing a CPU: each process gets its share of the cores, not all of them spinning against each other.
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    with run.open_log("a") as log:
        return start_process(command, log, "a", environment, own_session=False)


def _after_run(study: Study, name: str, exit_code: int, say) -> bool:
    """Reports how a run ended and fits its baselines; False when it was stopped, which ends the study."""
    run = study.run(name)
    status = run.reconcile() if run.exists() else {}
    state = status.get("state")
    if state == "stopped":
        return False
    if state != "completed":
        error = status.get("error") or f"its process ended with exit code {exit_code}: {run.log_tail(3)}"
        say(f"{name} failed: {error}")
        return True
    _fit_baselines(study, name, say)
    return True


def _fit_baselines(study: Study, name: str, say) -> None:
    """The baselines of a completed run, fitted on its training rows alone: the rows its level gave LIFT to learn
    from (its validation rows only choose LIFT's best step). A failure is told; the study goes on."""
    run = study.run(name)
    if not run.exists() or run.status().get("state") != "completed" or run.baselines() is not None:
        return
    say(f"fitting the baselines of {name} on its training rows")
    try:
        dataset, splits = run_dataset(run)
        training_rows = Splits(splits.train, splits.val.iloc[:0], splits.test)
        run.save_baselines(run_baselines(training_rows, dataset, names=study.spec().baselines or None,
                                         seed=run.config().seed))
    except Exception as error:  # a baseline that cannot fit these rows must not end the other runs' study
        say(f"the baselines of {name} could not be fitted: {error}")
        traceback.print_exc()
