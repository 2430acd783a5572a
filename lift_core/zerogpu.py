"""Hugging Face ZeroGPU hardware: model inference inside `@spaces.GPU`, for a time computed from the work, and
training refused there.

On ZeroGPU a Space has no GPU of its own: a function decorated by `spaces.GPU` gets one for each call, in a
process forked for it, for at most the seconds it asks for (checked against the visitor's daily quota before the
call starts). A training runs in a separate process, which never gets one, hence TRAINING_REFUSAL.

Without the `spaces` package nothing changes: `gpu_job` returns the function itself. With it, `spaces.GPU` is
applied, and it returns the function itself too unless the hardware is ZeroGPU (SPACES_ZERO_GPU set, read once
by spaces.config when `spaces` is first imported; spaces/zero/decorator.py, `_GPU`).

Verified here, with a test double of spaces 0.51.3 (tests/test_zerogpu.py) and once by hand with its real
wrappers (SPACES_ZERO_GPU set, its scheduler call replaced): the duration asked for each call, that the handler
gradio receives keeps its signature and type hints and stays a generator function where it was one, and that
nothing changes without `spaces`. Not verified here: a real ZeroGPU call, which needs a Space, its GPU and the
network.
"""

import math
from collections.abc import Callable

# The most seconds one call asks for. ZeroGPU checks the request against the visitor's remaining daily quota
# before the call starts, and an unauthenticated visitor's quota is 2 minutes (huggingface/hub-docs,
# docs/hub/spaces-zerogpu.md, "Usage Tiers"): a longer request is refused to every anonymous visitor, whatever
# the work. The package itself has no limit; the server's per-call one is undocumented (a few minutes).
MAX_SECONDS = 120

# Before the first answer: the forked process's GPU set-up and loading the run's model onto it.
LOAD_SECONDS = 20

# Seconds per answer when nothing of the model was timed here: a small model answers in well under this on a
# ZeroGPU slice (the tiny test model takes 0.5 ms per sampled answer on one CPU core).
DEFAULT_SECONDS_PER_ANSWER = 0.01

TRAINING_REFUSAL = (
    "Training is not available on ZeroGPU hardware. ZeroGPU lends a GPU only to the app's own functions, for "
    "a few minutes per call, and a training runs in a separate process, which never gets one. To train, pick "
    "CPU or a dedicated GPU (such as T4 or L4) in the Space's settings, or duplicate the Space and pick that "
    "hardware for your copy. Here you can still evaluate, predict and explore the example runs and any "
    "finished run already on the Space, on the GPU."
)


def _spaces_package():
    """The `spaces` package, or None where it is not installed. On ZeroGPU its import patches torch and fails
    once CUDA is initialised (spaces/zero/__init__.py), so it must first happen at start-up: decorating the
    handlers with gpu_job as the tabs are built does it."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces


def on_zerogpu() -> bool:
    """Whether the app runs on ZeroGPU hardware, as the `spaces` package itself decides."""
    spaces = _spaces_package()
    return spaces is not None and bool(spaces.config.Config.zero_gpu)


def call_seconds(seconds: float) -> int:
    """A request for one call: whole seconds, at least 1 and at most MAX_SECONDS."""
    return min(MAX_SECONDS, max(1, math.ceil(seconds)))


def inference_seconds(answers: int, seconds_per_answer: float | None = None) -> int:
    """The seconds to ask for a call that loads a run's model and draws `answers` answers at
    `seconds_per_answer` (DEFAULT_SECONDS_PER_ANSWER where none was measured)."""
    per_answer = DEFAULT_SECONDS_PER_ANSWER if seconds_per_answer is None else seconds_per_answer
    return call_seconds(LOAD_SECONDS + answers * per_answer)


def gpu_job(duration: Callable[..., float]):
    """A decorator that runs a handler inside `spaces.GPU` where the `spaces` package is installed, asking each
    call for call_seconds(duration(*args, **kwargs)), the handler's own arguments; elsewhere it returns the
    handler itself.

    spaces.GPU keeps what gradio reads of a handler (functools.wraps: its signature and type hints) and a
    generator function stays one, so its pictures still stream (spaces/zero/wrappers.py). On ZeroGPU the call's
    arguments and results are pickled to and from the forked process: decorate a handler whose server context
    is bound in a closure (lift_ui.common.with_context), not passed as an argument.
    """
    def decorate(handler):
        spaces = _spaces_package()
        if spaces is None:
            return handler
        return spaces.GPU(duration=lambda *args, **kwargs: call_seconds(duration(*args, **kwargs)))(handler)
    return decorate


def evaluation_seconds(run) -> int:
    """A run's test evaluation: a second when its results are saved (nothing is asked), else one answer per test
    row (eval_samples per row for a regression)."""
    from lift_core.boundary import answers_per_row

    if run.eval_results() is not None:
        return 1
    return inference_seconds(run.dataset_info().n_test * answers_per_row(run))


def prediction_seconds(run, rows: int) -> int:
    """Predicting a table of `rows` rows with a run's model, at the speed of its test evaluation."""
    from lift_core.boundary import answers_per_row, test_seconds_per_answer

    return inference_seconds(rows * answers_per_row(run), test_seconds_per_answer(run))


def map_seconds(run, *, resolution: int, margin: float, exhaustive: bool, samples: int) -> int:
    """A map of a run's model: a second when it was drawn before (boundary.saved_model_map), else every point's
    answers (an adaptive map asks fewer) at the best measured speed (boundary.sampling_estimate)."""
    from lift_core.boundary import sampling_estimate, saved_model_map

    if not samples and saved_model_map(run, resolution=resolution, margin=margin, exhaustive=exhaustive) is not None:
        return 1
    answers, seconds, _ = sampling_estimate(run, resolution=resolution, samples=max(1, samples))
    return inference_seconds(answers, seconds / answers if seconds else None)
