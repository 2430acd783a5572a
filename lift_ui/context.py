"""What the tabs share: settings of this server and the components one tab owns and others read."""

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from lift_core.launcher import TrainingLauncher


@dataclass
class AppContext:
    runs_dir: Path
    default_model: str
    default_quant: str
    hardware: str
    launcher: TrainingLauncher
    # Shared components, set by the tab that owns them; tabs are built in order (Data, Prompt, Train, ...).
    data_path: gr.State | None = None          # path of the current table: an uploaded copy or a synthetic set
    target: gr.Dropdown | None = None
    features: gr.Dropdown | None = None        # multiselect
    task: gr.Radio | None = None               # "auto", "classification" or "regression"
    template: gr.Radio | None = None
    template_text: gr.Textbox | None = None
    decimals: gr.Number | None = None
    trim_zeros: gr.Checkbox | None = None
    model: gr.Dropdown | None = None           # created unrendered: the Prompt tab reads it, Train renders it
    training_run: gr.State | None = None       # the run the Train tab follows (its folder)
    training_timer: gr.Timer | None = None     # the Train tab's poll; another tab that starts a run switches it on
    # Lines naming the active table, target, task and feature count: one under the tab bar, one in the Train tab.
    table_lines: list[gr.Markdown] | None = None

    @property
    def uploads_dir(self) -> Path:
        path = self.runs_dir / "uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path
