"""Data tab: upload a table, generate one of LIFT's synthetic sets or click an example, then choose the target,
features and task."""

import hashlib
import shutil
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import gradio as gr
import pandas as pd

from lift_core import data, synthetic
from lift_core.config import DEFAULTS
from lift_core.errors import LiftError
from lift_core.examples import EXAMPLE_TABLES
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
# The generator's settings as the tab opens, which the synthetic examples are generated with too.
SYNTHETIC_DEFAULTS = {"n": 400, "noise": 0.1, "seed": 0, "p": 1}
# The example tables by the name they are listed and loaded by (the synthetic examples go by their kind).
EXAMPLE_FILES = {example.file: example for example in EXAMPLE_TABLES.values()}
PRIVATE_COPY_HAS_NO_CAP = ("A private copy of this Space (**Duplicate this Space**, at the top of the page) has no "
                           "such limit.")
OWN_MACHINE_HAS_NO_CAP = "LIFT Studio run on your own machine has no such limit."
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


@dataclass(frozen=True)
class RowCap:
    """The most rows a table may have on a multi-user server (0: no cap), and where there is no cap."""
    rows: int = 0
    elsewhere: str = ""

    def check(self, rows: int) -> None:
        if self.rows and rows > self.rows:
            raise LiftError(f"{int(rows):,} rows are more than this server takes in one table ({self.rows:,} at "
                            f"most). {self.elsewhere}")


def row_cap(ctx: AppContext) -> RowCap:
    if not (ctx.limits and ctx.limits.max_rows):
        return RowCap()
    return RowCap(ctx.limits.max_rows, PRIVATE_COPY_HAS_NO_CAP if ctx.on_space else OWN_MACHINE_HAS_NO_CAP)


def show_table(path: Path, frame: pd.DataFrame, note: str = "", target: str | None = None) -> tuple:
    """Every output of a successful load, with the target (by default the column that looks like one) and the
    features already checked."""
    columns = list(frame.columns)
    target = target or default_target(columns)
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


def stored_table(uploads_dir: Path, source, cap: RowCap = RowCap(), **shown) -> tuple:
    """A load's outputs for the file at `source`, copied into the uploads folder; a LiftError says why it cannot be
    used. `shown`: show_table's note and target."""
    frame = data.load_table(source)  # checked before the copy, so a bad file leaves nothing behind
    cap.check(len(frame))
    return show_table(save_upload(source, uploads_dir), frame, **shown)


def load_upload(uploads_dir: Path, cap: RowCap, uploaded, data_path):
    """A load's outputs, then the upload box: it keeps showing the file in use, and drops one that was refused."""
    if not uploaded:
        return *keep_current_table(LiftError("No file was uploaded."), data_path), None
    try:
        return *stored_table(uploads_dir, uploaded, cap), gr.skip()
    except LiftError as error:
        return *keep_current_table(error, data_path), None


def generate(uploads_dir: Path, cap: RowCap, kind, n, noise, seed, p, data_path):
    """A load's outputs, then the upload box, emptied once the synthetic set is the table in use."""
    empty = [label for label, value in (("n", n), ("noise", noise), ("seed", seed), ("p", p)) if value is None]
    if empty:
        return *keep_current_table(LiftError(f"Fill in {', '.join(empty)} to generate a set."), data_path), gr.skip()
    try:
        cap.check(n)
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


def load_example(uploads_dir: Path, name, data_path):
    """A load's outputs, the upload box (emptied) and the example's template: an example table by its file name,
    copied into the uploads folder as an upload is (so a run records a copy no update of the app changes), or a
    synthetic set by its kind, generated with the tab's default settings. Examples are the app's own tables, so
    no row cap applies to them."""
    example = EXAMPLE_FILES.get(name)
    if example is not None:
        try:
            shown = stored_table(uploads_dir, example.path, note=f"An example table: {example.description}.",
                                 target=example.target)
        except LiftError as error:
            return *keep_current_table(error, data_path), gr.skip(), gr.skip()
        return *shown, None, example.template
    if name in SYNTHETIC_KINDS:
        return *generate(uploads_dir, RowCap(), name, data_path=data_path, **SYNTHETIC_DEFAULTS), DEFAULTS.template
    known = ", ".join([*EXAMPLE_FILES, *SYNTHETIC_KINDS])
    return *keep_current_table(LiftError(f"There is no example named '{name}'. The examples: {known}."),
                               data_path), gr.skip(), gr.skip()


def clicked_example(sample: list) -> tuple[str, str]:
    """The name of the example a click chose, and its template cleared: the load sets it again, so that the
    Prompt tab's template follows it even when the same example is loaded twice."""
    return sample[0], ""


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


def example_lists(ctx: AppContext) -> tuple[gr.Dataset, gr.Dataset, gr.Textbox]:
    """The example tables with what each one is and the paper's synthetic sets, a click on which loads one; then the
    name of the example clicked, the /load_example endpoint's input. Sets ctx.example_template, the template of the
    example just loaded."""
    with gr.Row():
        tables = gr.Dataset(
            # html: a textbox or markdown cell cuts its text at 60 characters.
            components=["textbox", "html"], headers=["Example table", "What it is"],
            samples=[[example.file, example.description] for example in EXAMPLE_TABLES.values()],
            samples_per_page=len(EXAMPLE_TABLES), scale=3,
            label="Examples: one click loads the table, its target and a template that suits it",
        )
        settings = SYNTHETIC_DEFAULTS
        synthetic_sets = gr.Dataset(
            components=["textbox"], samples=[[kind] for kind in SYNTHETIC_KINDS], layout="gallery",
            samples_per_page=len(SYNTHETIC_KINDS), scale=2,
            label=f"The LIFT paper's synthetic sets: {settings['n']} rows, noise {settings['noise']:g}, seed "
                  f"{settings['seed']}",
        )
    # Hidden yet in the page ("hidden", not False), so that the Prompt tab can follow the template's changes.
    example = gr.Textbox(label="Example", visible="hidden")
    ctx.example_template = gr.Textbox(label="Example template", visible="hidden")
    return tables, synthetic_sets, example


def connect_examples(ctx: AppContext, examples: tuple[gr.Dataset, gr.Dataset, gr.Textbox],
                     table_outputs: list) -> None:
    """A click on an example puts its name in the hidden `example` box and clears ctx.example_template, then loads
    it. One endpoint, /load_example, loads either kind by name: a table's file name or a synthetic kind."""
    tables, synthetic_sets, example = examples
    for listing, api in ((tables, {"api_name": "load_example"}), (synthetic_sets, {"api_visibility": "private"})):
        listing.click(clicked_example, listing, [example, ctx.example_template], queue=False, show_progress="hidden",
                      api_visibility="private").then(
            partial(load_example, ctx.uploads_dir), [example, ctx.data_path],
            table_outputs + [ctx.example_template], **api)


def build(ctx: AppContext) -> None:
    with gr.Tab("Data"):
        gr.Markdown("Upload a table, generate one of the synthetic sets of the LIFT paper, or click an example. "
                    "Then choose the column to predict (the target) and the columns to give the model (features).")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Upload a table (CSV, TSV, Parquet, Excel .xlsx or JSON Lines)",
                                 file_types=list(data.SUPPORTED_SUFFIXES), height=140)
            with gr.Column():
                with gr.Row():
                    kind = gr.Dropdown(list(SYNTHETIC_KINDS), value="moons", label="Synthetic set", min_width=140)
                    n_rows = gr.Number(SYNTHETIC_DEFAULTS["n"], label="Rows (n)", precision=0, minimum=2,
                                       min_width=90)
                    noise = gr.Number(SYNTHETIC_DEFAULTS["noise"], label="Noise", minimum=0, step=0.05, min_width=90)
                    seed = gr.Number(SYNTHETIC_DEFAULTS["seed"], label="Seed", precision=0, minimum=0, min_width=90)
                    dimensions = gr.Number(SYNTHETIC_DEFAULTS["p"], label="Dimensions (p)", precision=0, minimum=1,
                                           min_width=90, visible=False)
                regression_note = gr.Markdown(REGRESSION_NOTE, visible=False)
                generate_button = gr.Button("Generate", variant="secondary")
        examples = example_lists(ctx)
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
    cap = row_cap(ctx)
    upload.upload(partial(load_upload, ctx.uploads_dir, cap), [upload, ctx.data_path], table_outputs,
                  api_name="upload")
    generate_button.click(partial(generate, ctx.uploads_dir, cap),
                          [kind, n_rows, noise, seed, dimensions, ctx.data_path], table_outputs, api_name="synth")
    connect_examples(ctx, examples, table_outputs)
    kind.change(lambda name: [gr.update(visible=name in synthetic.REGRESSION_KINDS)] * 2, kind,
                [dimensions, regression_note], api_visibility="private")
    # .input, not .change: a load sets the target and features itself and has already checked them.
    gr.on([ctx.target.input, ctx.features.input, ctx.task.input], select,
          [ctx.data_path, ctx.target, ctx.features, ctx.task], [message, ctx.features, task_line, plot],
          api_name="select", trigger_mode="always_last")
