"""Processes as a run records them: a pid with its start time, the processes it started, and killing them all.

Linux only (it reads /proc), as the training processes are.
"""

import contextlib
import os
import signal
from pathlib import Path


def _stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc/PID/stat file after the process's name, which may itself hold spaces and brackets:
    the state is [0], the parent's pid [1], the start time [19]."""
    return stat.read_text().rsplit(")", 1)[1].split()


def process_start(pid: int) -> int | None:
    """When process `pid` began, in clock ticks since boot (field 22 of /proc/PID/stat); None where unknown."""
    try:
        return int(_stat_fields(Path(f"/proc/{pid}/stat"))[19])
    except (OSError, IndexError, ValueError):
        return None


def process_identity(pid: int) -> dict:
    """What a run records of its process: the pid, and its start time to tell it from a later process that
    reuses the pid (common after a container restart)."""
    return {"pid": pid, "pid_start": process_start(pid)}


def pid_alive(pid: int | None, started: int | None = None) -> bool:
    """Whether process `pid` lives, and, given its recorded start time, is still the same process."""
    if not pid:
        return False
    if started is not None and process_start(pid) not in (None, started):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); its state file says whether it is gone.
    try:
        return _stat_fields(Path(f"/proc/{pid}/stat"))[0] != "Z"
    except OSError:
        return True


def identity_alive(identity: dict) -> bool:
    """pid_alive for a recorded {"pid", "pid_start"} (an empty record is no process)."""
    return pid_alive(identity.get("pid"), identity.get("pid_start"))


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, from /proc (empty where there is none): torchrun starts each
    training process in a session of its own, so a kill of the launching process's group misses them."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(_stat_fields(stat)[1])
        except (OSError, IndexError, ValueError):
            continue  # it ended meanwhile
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, waiting = [], [pid]
    while waiting:
        offspring = children.get(waiting.pop(), [])
        found += offspring
        waiting += offspring
    return found


def kill_with_descendants(pid: int) -> None:
    """SIGKILL for `pid` and every process it started, those first: its death would leave them to init."""
    for doomed in [*descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(doomed, signal.SIGKILL)
