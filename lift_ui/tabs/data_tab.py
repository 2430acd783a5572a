"""Data tab: upload a table or generate one of LIFT's synthetic sets, then choose the target, features and task."""

import hashlib
import shutil
from functools import lru_cache, partial
from pathlib import Path

import gradio as gr
import pandas as pd

from lift_core import data, synthetic
from lift_core.errors import LiftError
from lift_core.files import write_atomically
from lift_core.selection import TableChoice
from lift_ui.common import error_message, rounded_for_display
from lift_ui.context import AppContext
from lift_ui.figures.data import scatter
from lift_ui.tables import read_table, selected_dataset, table_choice, table_name

PREVIEW_ROWS = 20
MAX_PLOTTED_ROWS = 5000  # more points only slow the browser down without showing more
TASK_CHOICES = ("auto",) + data.TASKS
SYNTHETIC_KINDS = synthetic.CLASSIFICATION_KINDS + synthetic.REGRESSION_KINDS
_TARGET_NAMES = ("y", "target", "label", "class")  # column names that usually hold the answer
REGRESSION_NOTE = "A regression set keeps 20% of its rows apart as a noise-free test table."
# What a load shows: path, message, info, preview, summary, target, features, task, note, plot, and the previews' row.
TABLE_OUTPUTS = 11


@lru_cache(maxsize=16)
def selection_figure(data_path: str, target: str, features: tuple[str, ...], task: str):
    """The Data tab's scatter of a selection, drawn once: it costs more than the rest of a selection together."""
    return dataset_figure(selected_dataset(data_path, target, list(features), task))


def default_target(columns: list[str]) -> str:
    by_lower_name = {column.lower(): column for column in columns}
    return next((by_lower_name[name] for name in _TARGET_NAMES if name in by_lower_name), columns[-1])


def column_summary(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "column": frame.columns,
        "dtype": [str(dtype) for dtype in frame.dtypes],
        "missing": frame.isna().sum().to_numpy(),
        "distinct": frame.nunique().to_numpy(),
    })


def dataset_figure(dataset: data.Dataset):
    """A scatter plot when the features fit in one picture: two numeric features, or one for a regression."""
    frame = dataset.frame
    numeric = [name for name in dataset.features if pd.api.types.is_numeric_dtype(frame[name])]
    if len(frame) > MAX_PLOTTED_ROWS:
        frame = frame.sample(MAX_PLOTTED_ROWS, random_state=0)
    if len(dataset.features) == 2 and len(numeric) == 2:
        return scatter(frame, *numeric, color=dataset.target, color_order=dataset.classes)
    if len(dataset.features) == 1 and len(numeric) == 1 and dataset.task == "regression":
        return scatter(frame, numeric[0], dataset.target)
    return None


def task_note(choice: TableChoice, task_choice: str) -> str:
    """What the task is, or would be when training would refuse the choice (the message under it says why)."""
    if choice.task is None:
        return ""
    dataset, how = choice.dataset, "auto-detected" if task_choice == "auto" else "chosen"
    if choice.task == "regression":
        what = "**regression** (the target is a number)" if dataset else "**regression**"
    else:
        what = f"**classification** with {choice.n_classes} classes"
        if dataset:
            what += " (" + ", ".join(dataset.classes[:10]) + (", ..." if len(dataset.classes) > 10 else "") + ")"
    note = f"Task: {what}, {how}."
    if dataset is None:
        return note
    note += f" {len(dataset.frame)} rows"
    if dataset.n_dropped:
        return note + f"; {dataset.n_dropped} rows dropped because '{dataset.target}' is missing."
    return note + "."


def describe_selection(data_path, target, features, task):
    """(message, task note, plot) for the current choice of target, features and task."""
    hidden_plot = gr.update(value=None, visible=False)
    try:
        choice = table_choice(data_path, target, features, task)
    except LiftError as error:
        return error_message(error), "", hidden_plot
    if choice.problem:
        return error_message(choice.problem), task_note(choice, task), hidden_plot
    figure = selection_figure(data_path, target, tuple(features or ()), task)
    return "", task_note(choice, task), gr.update(value=figure, visible=figure is not None)


def show_table(path: Path, frame: pd.DataFrame, note: str = "") -> tuple:
    """Every output of a successful load, with the default target and features already checked."""
    columns = list(frame.columns)
    target = default_target(columns)
    features = [column for column in columns if column != target]
    message, task_line, plot = describe_selection(str(path), target, features, "auto")
    info = f"**{table_name(str(path))}**: {len(frame)} rows × {len(columns)} columns. {note}".strip()
    return (
        str(path), message, info, rounded_for_display(frame.head(PREVIEW_ROWS)), column_summary(frame),
        gr.update(choices=columns, value=target), gr.update(choices=features, value=features),
        "auto", task_line, plot, gr.update(visible=True),
    )


def save_upload(uploaded: str, uploads_dir: Path) -> Path:
    """Copy the upload into the uploads folder under the name it was uploaded as, in a folder named by its content:
    the same file is stored once, and every part of the page shows the name the person knows it by."""
    source = Path(uploaded)
    with open(source, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()[:12]
    copy = uploads_dir / digest / source.name
    if not copy.exists():
        copy.parent.mkdir(exist_ok=True)
        write_atomically(copy, lambda partial: shutil.copyfile(source, partial))
    return copy


def save_csv(frame: pd.DataFrame, path: Path) -> None:
    write_atomically(path, lambda partial: frame.to_csv(partial, index=False))


def keep_current_table(error: LiftError, data_path) -> tuple:
    """A failed load changes only the message: the table loaded before stays in use."""
    text = error_message(error)
    if data_path:
        text += f"  \nStill using the previous table, {table_name(data_path)}."
    return (gr.skip(), text, *[gr.skip()] * (TABLE_OUTPUTS - 2))


def load_upload(uploads_dir: Path, uploaded, data_path):
    """A load's outputs, then the upload box: it keeps showing the file in use, and drops one that was refused."""
    if not uploaded:
        return *keep_current_table(LiftError("No file was uploaded."), data_path), None
    try:
        frame = data.load_table(uploaded)  # checked before the copy, so a bad file leaves nothing behind
    except LiftError as error:
        return *keep_current_table(error, data_path), None
    return *show_table(save_upload(uploaded, uploads_dir), frame), gr.skip()


def generate(uploads_dir: Path, kind, n, noise, seed, p, data_path):
    """A load's outputs, then the upload box, emptied once the synthetic set is the table in use."""
    empty = [label for label, value in (("n", n), ("noise", noise), ("seed", seed), ("p", p)) if value is None]
    if empty:
        return *keep_current_table(LiftError(f"Fill in {', '.join(empty)} to generate a set."), data_path), gr.skip()
    try:
        if kind in synthetic.REGRESSION_KINDS:
            frame, clean_test = synthetic.make_regression(kind, n=n, p=p, noise=noise, seed=seed)
            name = f"{kind}-n{n}-p{p}-noise{noise:g}-seed{seed}"
        else:
            frame = synthetic.make_classification(kind, n=n, noise=noise, seed=seed)
            clean_test = None
            name = f"{kind}-n{n}-noise{noise:g}-seed{seed}"
    except LiftError as error:
        return *keep_current_table(LiftError(f"Cannot generate '{kind}': {error}"), data_path), gr.skip()
    path = uploads_dir / f"{name}.csv"
    save_csv(frame, path)
    note = ""
    if clean_test is not None:
        # As in the LIFT paper, only the training rows are noisy; the clean rows make a fair test table.
        test_path = uploads_dir / f"{name}-test.csv"
        save_csv(clean_test, test_path)
        note = f"Its {len(clean_test)} noise-free test rows are in `{test_path}`."
    return *show_table(path, frame, note), None


def select(data_path, target, features, task):
    """Check the choice; the target is never offered as a feature, since it would give the answer away."""
    features = [name for name in features or [] if name != target]
    text, task_line, plot = describe_selection(data_path, target, features, task)
    try:
        columns = list(read_table(data_path).columns) if data_path else []
    except LiftError:  # the file has gone; describe_selection's message already says so
        columns = []
    features_update = gr.update(choices=[name for name in columns if name != target], value=features)
    return text, features_update, task_line, plot


def build(ctx: AppContext) -> None:
    with gr.Tab("Data"):
        gr.Markdown("Upload a table, or generate one of the synthetic sets of the LIFT paper. "
                    "Then choose the column to predict (the target) and the columns to give the model (features).")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Upload a table (CSV, TSV, Parquet, Excel .xlsx or JSON Lines)",
                                 file_types=list(data.SUPPORTED_SUFFIXES), height=140)
            with gr.Column():
                with gr.Row():
                    kind = gr.Dropdown(list(SYNTHETIC_KINDS), value="moons", label="Synthetic set", min_width=140)
                    n_rows = gr.Number(400, label="Rows (n)", precision=0, minimum=2, min_width=90)
                    noise = gr.Number(0.1, label="Noise", minimum=0, step=0.05, min_width=90)
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, min_width=90)
                    dimensions = gr.Number(1, label="Dimensions (p)", precision=0, minimum=1, min_width=90,
                                           visible=False)
                regression_note = gr.Markdown(REGRESSION_NOTE, visible=False)
                generate_button = gr.Button("Generate", variant="secondary")
        table_info = gr.Markdown()
        # Always shown, even before a table: in gradio 6 a multiselect dropdown first revealed by a load keeps
        # firing change events.
        with gr.Row():
            # Custom values pass gradio's check of the choices, which a listener reading these dropdowns while
            # a load replaces their choices would otherwise fail with a stale value; the engine checks names.
            ctx.target = gr.Dropdown(label="Target (the column to predict)", interactive=True,
                                     allow_custom_value=True)
            ctx.features = gr.Dropdown(label="Features", multiselect=True, interactive=True, scale=2,
                                       allow_custom_value=True)
            ctx.task = gr.Radio(list(TASK_CHOICES), value="auto", label="Task", min_width=360)
        task_line = gr.Markdown()
        # Under the choice it is about; a load's problem is said here too, beside the table still in use.
        message = gr.Markdown()
        plot = gr.Plot(label="Scatter of the data", visible=False)
        with gr.Row(visible=False) as preview_row:  # until there is a table to preview
            preview = gr.Dataframe(label=f"First {PREVIEW_ROWS} rows", interactive=False, scale=2)
            summary = gr.Dataframe(label="Columns", interactive=False, scale=1)

    # In the order of show_table's outputs (TABLE_OUTPUTS of them), then the upload box.
    table_outputs = [ctx.data_path, message, table_info, preview, summary, ctx.target, ctx.features, ctx.task,
                     task_line, plot, preview_row, upload]
    upload.upload(partial(load_upload, ctx.uploads_dir), [upload, ctx.data_path], table_outputs, api_name="upload")
    generate_button.click(partial(generate, ctx.uploads_dir), [kind, n_rows, noise, seed, dimensions, ctx.data_path],
                          table_outputs, api_name="synth")
    kind.change(lambda name: [gr.update(visible=name in synthetic.REGRESSION_KINDS)] * 2, kind,
                [dimensions, regression_note], api_visibility="private")
    # .input, not .change: a load sets the target and features itself and has already checked them.
    gr.on([ctx.target.input, ctx.features.input, ctx.task.input], select,
          [ctx.data_path, ctx.target, ctx.features, ctx.task], [message, ctx.features, task_line, plot],
          api_name="select", trigger_mode="always_last")
