"""A stop, asked for by a signal (the launcher's SIGTERM, Ctrl-C) or by the run's STOP file (the Stop button), as
one flag that the training checks after each step and the test evaluation after each batch."""

import signal
import threading

from lift_core.runs import Run


class StopRequest:
    """Turns SIGTERM, SIGINT and the run's stop file into one flag the trainer checks each step.

    A context manager: the caller's own signal handlers come back afterwards, so Ctrl-C works again
    after an in-process fit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, run: Run):
        self.run = run
        self.signalled = False
        self.previous_handlers = {}

    def __enter__(self) -> "StopRequest":
        # Only the main thread may set handlers; the Python API can be called from any thread.
        if threading.current_thread() is threading.main_thread():
            self.previous_handlers = {signum: signal.signal(signum, self._on_signal) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous_handlers.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum, frame):
        self.signalled = True

    @property
    def requested(self) -> bool:
        return self.signalled or self.run.stop_requested()

    def check(self, done: int, total: int) -> None:
        """A progress callback that ends a test evaluation once a stop is requested."""
        if self.requested:
            raise StoppedDuringEvaluation()


class StoppedDuringEvaluation(Exception):
    pass
