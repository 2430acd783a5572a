"""What several tabs show the same way: problems, the majority-class warning, run pickers, progress bars,
downloads, and the controls of TrainConfig's settings."""

import functools
import inspect
import math
import numbers
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from lift_core.config import DEFAULTS, SETTINGS
from lift_core.errors import LiftError
from lift_core.evaluation import majority_warning
from lift_core.examples import EXAMPLE_RUN_PREFIX
from lift_core.zerogpu import gpu_job


# Asking a model holds it in memory and keeps every core busy: one such job per server at a time, the others
# wait in gradio's queue (which shows each its place), and training status and previews stay quick meanwhile.
MODEL_JOB = {"concurrency_id": "model_inference", "concurrency_limit": 1}
# Significant digits of the numbers a page shows (0.8586, not 0.8585984175660241; 2.891e-05, not 0); the files
# to download keep every digit.
DISPLAY_DIGITS = 4


def error_message(error: Exception) -> str:
    """How every tab shows a problem with the user's input: in the page, never as a traceback."""
    return f"⚠️ {error}"


def majority_note(results: dict) -> str:
    """A paragraph to append when a classifier does no better than always answering its commonest class."""
    warning = majority_warning(results)
    return f"\n\n⚠️ {warning}" if warning else ""


def shown_number(value):
    """A number as a page shows it: DISPLAY_DIGITS significant digits, never fewer than its whole part."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value == 0:
        return value
    return round(value, max(0, DISPLAY_DIGITS - 1 - math.floor(math.log10(abs(value)))))


def rounded_for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table whose decimal numbers are as a page shows them."""
    shown = frame.copy()
    for name in frame.columns[[pd.api.types.is_float_dtype(dtype) for dtype in frame.dtypes]]:
        shown[name] = frame[name].map(shown_number)
    return shown


def rounded(results: dict | None) -> dict | None:
    """A results dict (eval.json) with its numbers as a page shows them."""
    if results is None:
        return None
    return {key: shown_number(value) if isinstance(value, float) else value for key, value in results.items()}


def with_context(handler, ctx):
    """`handler` with the server's context as its first argument. Unlike functools.partial, it keeps what gradio
    reads of a handler: its type hints (so a `request: gr.Request` parameter is filled in with the caller's
    session) and whether it is a generator (so its pictures are streamed)."""
    if inspect.isgeneratorfunction(handler):
        def bound(*args, **kwargs):
            yield from handler(ctx, *args, **kwargs)
    else:
        def bound(*args, **kwargs):
            return handler(ctx, *args, **kwargs)
    bound = functools.wraps(handler)(bound)
    bound.__signature__ = inspect.signature(functools.partial(handler, ctx))
    return bound


def gpu_handler(ctx, handler, seconds):
    """`handler` bound to the server's context (with_context), run inside a ZeroGPU call where the `spaces` package
    is installed, asking for seconds(run, *inputs): the run its first input names and its other inputs. A name
    that is not a finished run asks for a second: the handler says what is wrong."""
    def duration(run_name, *inputs):
        request = next((value for value in inputs if isinstance(value, gr.Request)), None)
        try:
            run = ctx.access(request).finished_trained_run(run_name)
        except LiftError:
            return 1
        return seconds(run, *inputs)
    return gpu_job(duration)(with_context(handler, ctx))


def run_label(name: str) -> str:
    """How a picker names a run: a shipped example says so."""
    return f"{name} (example, read-only)" if name.startswith(EXAMPLE_RUN_PREFIX) else name


def run_choices(access, current: str | None = None, choose_newest: bool = True) -> gr.Dropdown:
    """The trained runs a person sees, keeping the current choice while it exists, else the newest (or, without
    `choose_newest`, none: the page has not chosen yet)."""
    names = access.trained_run_names()
    newest = next(iter(names), None) if choose_newest else None
    return gr.Dropdown(choices=[(run_label(name), name) for name in names],
                       value=current if current in names else newest)


def run_tab_header(ctx, tab: gr.Tab, description: str) -> tuple[gr.Dropdown, gr.Markdown]:
    """The top of a tab about one trained run: what the tab does, a run picker and a message line.

    The picker lists what anyone may see (on a multi-user server: the examples) until the page says who it is; it
    refreshes with its button, whenever the tab opens and once the page's visitor is known.
    """
    gr.Markdown(description)
    listed = run_choices(ctx.page_access())
    with gr.Row():
        # Runs finished after the page loaded are valid too, hence custom values; the engine checks the name.
        picker = gr.Dropdown(listed.choices, value=listed.value, label="Run", allow_custom_value=True, scale=4)
        refresh = gr.Button("↻ Refresh runs", scale=0, min_width=140)

    def refreshed(current, request: gr.Request):
        return run_choices(ctx.access(request), current)

    def visitor_runs(current, request: gr.Request):  # the newest is chosen when the tab opens, not before
        return run_choices(ctx.access(request), current, choose_newest=False)

    for trigger in (refresh.click, tab.select):
        trigger(refreshed, picker, picker, api_visibility="private")
    ctx.visitor_known(visitor_runs, picker, picker, api_visibility="private")
    return picker, gr.Markdown()


def engine_progress(progress: gr.Progress, description: str):
    """The engine's progress(done, total) callback, shown as a gradio progress bar."""
    return lambda done, total: progress(done / total if total else 1.0, desc=description)


def download_copy(table: pd.DataFrame, file_name: str) -> str:
    """A CSV in a fresh temporary folder: gradio serves it from anywhere, under a name that says what it is."""
    path = Path(tempfile.mkdtemp(prefix="lift-")) / file_name
    table.to_csv(path, index=False)
    return str(path)


def setting_control(name: str, **options):
    """The control of a TrainConfig setting: its label, default and help come from TrainConfig (a `value` option
    replaces the default where the page knows better, as the number of GPUs).

    A number control unless `options` picks a slider (minimum and maximum) or the setting is text or a yes/no
    one; whole-number settings take whole numbers only.
    """
    default, metadata = getattr(DEFAULTS, name), SETTINGS[name].metadata
    common = {"value": options.pop("value", default), "label": metadata["label"], "info": metadata["help"]}
    if isinstance(default, str):
        return gr.Textbox(**common, **options)
    if isinstance(default, bool):  # before the whole numbers: a bool is an int too
        return gr.Checkbox(**common, **options)
    if options.pop("slider", False):
        return gr.Slider(**common, **options)
    return gr.Number(**common, precision=0 if isinstance(default, int) else None, **options)
