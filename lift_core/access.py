"""Which runs a person sees and may change. A single user owns every run of the runs folder. On a multi-user
server (a public Space) each visitor sees the shipped example runs and their own runs only, and may stop, resume
or delete only their own: every handler asks this, on the server, whatever the page shows.

Shipped example runs are opened read-only (runs.Run refuses any write to them), so no visitor can change them.
"""

from dataclasses import dataclass
from pathlib import Path

from lift_core.errors import LiftError
from lift_core.runs import ACTIVE_STATES, Run, list_runs

# The folder of the example runs that ship with the app (made by `python -m assets.make_examples --runs`).
EXAMPLE_RUNS_DIR = Path(__file__).resolve().parent.parent / "assets" / "example_runs"


@dataclass(frozen=True)
class VisitorLimits:
    """What one visitor of a multi-user server may use; app.py's flags set them (their help is here)."""
    max_runs: int = 3          # trainings a visitor may have at once (queued, training or kept); 0: no cap
    max_rows: int = 5000       # rows of a table a visitor may upload; 0: no cap
    max_age_hours: float = 24  # a visitor's runs are deleted this long after they were created; 0: never

    HELP = {
        "max_runs": "trainings one visitor may have at once, queued, training or finished (delete one to train "
                    "another); 0: no cap",
        "max_rows": "rows of a table one visitor may upload or generate; 0: no cap",
        "max_age_hours": "hours after which a visitor's runs are deleted; 0: never",
    }

    def check_table_rows(self, rows: int) -> None:
        if self.max_rows and rows > self.max_rows:
            raise LiftError(f"This table has {rows:,} rows, and this server trains on at most {self.max_rows:,}. "
                            f"Train on a sample of {self.max_rows:,} rows or fewer, or run LIFT Studio on your own "
                            "hardware for a bigger table.")

    def check_run_count(self, kept: int) -> None:
        """Refuses a new run to a visitor who has `kept` runs (waiting, training or finished)."""
        if self.max_runs and kept >= self.max_runs:
            raise LiftError(f"You have {kept} runs, waiting, training or finished, and one visitor may keep at most "
                            f"{self.max_runs} here. Delete one in the Runs tab to train another.")


@dataclass(frozen=True)
class RunAccess:
    runs_dir: Path
    examples_dir: Path | None = None
    owner: str | None = None  # a visitor's id on a multi-user server; None: one user, who owns every run

    def own_runs(self) -> list[Run]:
        """This person's runs, newest first."""
        return [run for run in list_runs(self.runs_dir) if self.owner is None or run.owner() == self.owner]

    def example_runs(self) -> list[Run]:
        if self.examples_dir is None:
            return []
        # By name: the order they were made in says nothing to a visitor.
        return sorted((Run(run.path, read_only=True) for run in list_runs(self.examples_dir)),
                      key=lambda run: run.name)

    def runs(self) -> list[Run]:
        """What this person sees: their own runs, newest first, then the examples."""
        return self.own_runs() + self.example_runs()

    def find(self, name: str | None) -> Run:
        """A run this person may open. Names come from the browser: only a listed name reaches the file system,
        and another visitor's run reads as no run at all."""
        if not name:
            raise LiftError("Choose a run first.")
        run = next((run for run in self.runs() if run.name == name), None)
        if run is None:
            raise LiftError(f"There is no run named '{name}'. Refresh the list of runs to see the current ones.")
        return run

    def find_own(self, name: str | None) -> Run:
        """A run this person may change (resume, stop, delete): never an example."""
        run = self.find(name)
        if run.read_only:
            raise LiftError(f"Run '{name}' is a shipped example: it can be opened, evaluated and explored, but not "
                            "resumed, stopped or deleted. Train your own in the Train tab.")
        return run

    def trained_run_names(self) -> list[str]:
        """Names of the runs with a saved adapter, own runs newest first, then the examples."""
        return [run.name for run in self.runs() if run.has_adapter()]

    def finished_trained_run(self, name: str | None) -> Run:
        """The named run, once it has finished with a saved adapter: a model that can be evaluated and asked."""
        if not name:
            raise LiftError("Choose a run first (train one in the Train tab, then press ↻ Refresh runs).")
        run = self.find(name)
        state = run.reconcile().get("state")
        if state in ACTIVE_STATES:
            raise LiftError(f"Run '{name}' is still {state}; evaluate it once it has finished.")
        if not run.has_adapter():
            raise LiftError(f"Run '{name}' has no trained adapter (it ended as '{state}'), so there is no model to "
                            "evaluate.")
        return run
