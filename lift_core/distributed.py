"""Training on several processes, through Hugging Face Accelerate.

`python -m lift_core train --num-processes N` runs `accelerate launch` (torchrun underneath), which starts the same
command once per GPU. Those processes find WORLD_SIZE set and train together, data-parallel: each holds the whole
(LoRA-wrapped, maybe 4-bit) model and takes its own batches. The main one alone writes the run folder. The process
that launched them waits, and when one of them fails it records which one and why, since the others only see a
broken connection.
"""

import contextlib
import json
import os
import signal
import tempfile
import time
from pathlib import Path

from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.files import read_json
from lift_core.processes import identity_alive
from lift_core.runs import Run, RunStateError

# Read by torchrun's agent when a process fails: what this process says went wrong (see record_failure).
ERROR_FILE_VARIABLE = "TORCHELASTIC_ERROR_FILE"
# After passing a SIGTERM or SIGINT on, torchrun kills the processes this many seconds later (its default, 30 s, can
# be shorter than a slow step plus saving the checkpoint and the adapter).
STOP_GRACE_S = 600
# How long a process waits in a collective: the others wait while the main process scores the validation rows,
# which for a large table or sampled regression answers can take longer than NCCL's default of 10 minutes.
COLLECTIVE_TIMEOUT_S = 2 * 3600


class TrainingProcessFailed(LiftError):
    """One of a multi-process run's processes failed; the CLI exits with that process's exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def inside_launch() -> bool:
    """Whether this process is one of those `accelerate launch` started (torchrun sets WORLD_SIZE for each)."""
    return "WORLD_SIZE" in os.environ


def training_processes():
    """The processes this one trains with: under `accelerate launch`, one per device, each running the same
    command; a process started alone is a group of one."""
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    # cpu=True without CUDA, as TrainingArguments(use_cpu=True) does: PartialState() alone would see torchrun's
    # ranks, find no GPU and fall back to one independent process per rank, each training on all the data.
    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))


def leave() -> None:
    """Leaves the process group once this process is done: the main one may still be evaluating, alone."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def on_any_process(flag: bool) -> bool:
    """Whether `flag` holds on any training process, told to all: per-step decisions (stop, save) must agree,
    or one process would wait forever in a collective the others skipped."""
    import torch

    processes = training_processes()
    if not processes.use_distributed:
        return flag
    value = torch.tensor([float(flag)], device=processes.device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def check_processes(config: TrainConfig) -> None:
    """Refuses more processes than GPUs: several processes on one GPU would only fight over its memory. Without a
    GPU they share the CPU cores (gloo), slower than one process, but it is how the multi-process path is tested."""
    from lift_core.models import cuda_device_count

    visible = cuda_device_count()
    if config.num_processes > 1 and visible and config.num_processes > visible:
        raise LiftError(f"{config.num_processes} training processes need {config.num_processes} GPUs, but "
                        f"{visible} {'is' if visible == 1 else 'are'} visible: lower --num-processes.")


def accelerate_config(config: TrainConfig) -> dict:
    """`accelerate launch`'s settings for `config`, written to a file of our own so that a user's default
    Accelerate configuration never changes how a run trains."""
    from lift_core.models import has_cuda

    return {
        "compute_environment": "LOCAL_MACHINE",
        # MULTI_GPU is torchrun: one process per GPU, or on a CPU (use_cpu) gloo processes on one machine.
        # MULTI_CPU would need mpirun.
        "distributed_type": "MULTI_GPU",
        "num_processes": config.num_processes,
        "num_machines": 1,
        "machine_rank": 0,
        "main_process_port": 0,  # any free port: two runs on one machine never collide
        "gpu_ids": "all",
        "use_cpu": not has_cuda(),
        # The model's own precision (models.compute_dtype) and the Trainer's settings decide, not Accelerate.
        "mixed_precision": "no",
        "rdzv_backend": "static",
        "same_network": True,
        "debug": False,
    }


def launch(config: TrainConfig, argv: list[str], run_dir) -> None:
    """Runs `accelerate launch -m lift_core <argv>` and waits for its processes. When one fails, the run is
    recorded as failed with that process's error, which TrainingProcessFailed also carries."""
    import yaml
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    check_processes(config)
    os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(STOP_GRACE_S))
    run = Run(run_dir)
    with tempfile.TemporaryDirectory(prefix="lift-accelerate-") as folder:
        config_file = Path(folder) / "accelerate.yaml"
        config_file.write_text(yaml.safe_dump(accelerate_config(config)))
        arguments = launch_command_parser().parse_args(["--config_file", str(config_file), "-m", "lift_core", *argv])
        try:
            launch_command(arguments)
        except ChildFailedError as failure:
            error = _failure_error(failure, config.num_processes)
            _record_failure(run, error)
            raise error from None
        except SignalException as signalled:
            # Passed on to every process, which stop at the same step and save; the main one reports the stop.
            state = run.status().get("state")
            if state not in ("stopped", "completed"):
                raise TrainingProcessFailed(f"Stopped by {signalled.sigval.name} before the run could save; it is "
                                            f"{state}. `train --resume {run_dir}` continues it.", 1) from None


def _failure_error(failure, processes: int) -> TrainingProcessFailed:
    """The failure that caused the others, which usually only saw a broken connection: a process killed by a signal
    of its own (the OOM killer's, say; torchrun passes on only SIGTERM and SIGINT), else the one that recorded the
    earliest error, else torchrun's first."""
    def recorded_at(process_failure) -> float:
        return (read_json(process_failure.error_file) or {}).get("time", float("inf"))

    def cause_first(item) -> tuple:
        process_failure = item[1]
        killed = process_failure.exitcode < 0 and -process_failure.exitcode not in (signal.SIGTERM, signal.SIGINT)
        return not killed, recorded_at(process_failure), process_failure.timestamp

    rank, first = min(failure.failures.items(), key=cause_first)
    if first.exitcode < 0:
        message = f"was killed (signal {-first.exitcode}, {first.signal_name()})"
    else:
        message = f"failed: {first.message}" if recorded_at(first) < float("inf") else \
            f"exited with code {first.exitcode}"
    return TrainingProcessFailed(f"Training process {rank} of {processes} {message}",
                                 first.exitcode if first.exitcode > 0 else 1)


def _record_failure(run: Run, error: TrainingProcessFailed) -> None:
    status = run.status()
    # Not when the run never started (nothing to record it in), nor once another live process owns it: a resume
    # from the page may start while this launch is still shutting down.
    if run.exists() and (status.get("pid") == os.getpid() or not identity_alive(status)):
        with contextlib.suppress(RunStateError):  # it completed before another process failed at exit
            run.fail(str(error))


def record_failure(message: str) -> None:
    """Under `accelerate launch`, leaves this process's error where torchrun's agent reads it (the format of
    torch.distributed.elastic's ErrorHandler), with the precise time that tells which process failed first."""
    path = os.environ.get(ERROR_FILE_VARIABLE)
    if path:
        Path(path).write_text(json.dumps({"message": message, "timestamp": int(time.time()), "time": time.time()}))
