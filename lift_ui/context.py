"""What the tabs share: settings of this server and the components one tab owns and others read."""

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from lift_core.access import RunAccess, VisitorLimits
from lift_core.errors import LiftError
from lift_core.launcher import TrainingLauncher


@dataclass
class AppContext:
    runs_dir: Path
    default_model: str
    default_quant: str
    hardware: str
    launcher: TrainingLauncher
    examples_dir: Path | None = None           # the shipped example runs, listed read-only beside a person's own
    # A multi-user server (a public Space): each visitor sees the examples and their own runs, within these limits.
    limits: VisitorLimits | None = None
    on_space: bool = False                     # served by Hugging Face Spaces (SPACE_ID is set)
    # A multi-user page's visitor, by gradio session: the id its browser keeps (see lift_ui.visitors).
    visitors: dict[str, str] = field(default_factory=dict)
    # Shared components, set by the tab that owns them; tabs are built in order (Data, Prompt, Train, ...).
    data_path: gr.State | None = None          # path of the current table: an uploaded copy or a synthetic set
    target: gr.Dropdown | None = None
    features: gr.Dropdown | None = None        # multiselect
    task: gr.Radio | None = None               # "auto", "classification" or "regression"
    template: gr.Radio | None = None
    # The template of the example the Data tab just loaded ('' while one loads); the Prompt tab's template follows.
    example_template: gr.Textbox | None = None
    template_text: gr.Textbox | None = None
    decimals: gr.Number | None = None
    trim_zeros: gr.Checkbox | None = None
    model: gr.Dropdown | None = None           # created unrendered: the Prompt tab reads it, Train renders it
    training_run: gr.State | None = None       # the run the Train tab follows (its folder)
    training_timer: gr.Timer | None = None     # the Train tab's poll; another tab that starts a run switches it on
    visitor_known: object = None               # the event of a page learning who its visitor is (lift_ui.visitors)
    # Lines naming the active table, target, task and feature count: one under the tab bar, one in the Train tab.
    table_lines: list[gr.Markdown] | None = None

    @property
    def multi_user(self) -> bool:
        return self.limits is not None

    def access(self, request: gr.Request | None) -> RunAccess:
        """The runs the person behind `request` sees and may change. On a multi-user server a session whose page
        has not said who it is (an API client) is a visitor of its own, with no runs of anyone else."""
        if not self.multi_user:
            return RunAccess(self.runs_dir, self.examples_dir)
        session = getattr(request, "session_hash", None)
        if not session:
            raise LiftError("This server keeps each visitor's runs apart, and this request came from no session.")
        return RunAccess(self.runs_dir, self.examples_dir, owner=self.visitors.get(session, f"session-{session}"))

    def page_access(self) -> RunAccess:
        """What a page shows before it knows its visitor: on a multi-user server, the examples only."""
        return RunAccess(self.runs_dir, self.examples_dir, owner="" if self.multi_user else None)

    @property
    def uploads_dir(self) -> Path:
        path = self.runs_dir / "uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path
