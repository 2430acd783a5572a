"""ZeroGPU: without the `spaces` package nothing changes; with it (a test double of spaces 0.51.3, which needs a
Space to do anything real), each call asks for a time computed from its arguments, and gradio still reads the
handler's type hints and streams its generators."""

import functools
import math
import inspect
import sys
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio.utils import get_type_hints

from lift_core import zerogpu
from lift_core.zerogpu import LOAD_SECONDS, MAX_SECONDS, gpu_job, inference_seconds, on_zerogpu


class FakeSpaces:
    """Stands for the `spaces` package: GPU(duration=...) returns the function itself off ZeroGPU and, on it,
    a functools.wraps wrapper (a generator function for a generator function) that computes the call's duration
    from the call's arguments first, as spaces/zero/decorator.py and spaces/zero/wrappers.py do. It records the
    seconds each call asked for."""

    def __init__(self, zero_gpu: bool):
        self.config = SimpleNamespace(Config=SimpleNamespace(zero_gpu=zero_gpu))
        self.requested = []

    def GPU(self, *, duration):
        def decorate(task):
            if not self.config.Config.zero_gpu:
                return task
            if inspect.isgeneratorfunction(task):
                def handler(*args, **kwargs):
                    self.requested.append(duration(*args, **kwargs))
                    yield from task(*args, **kwargs)
            else:
                def handler(*args, **kwargs):
                    self.requested.append(duration(*args, **kwargs))
                    return task(*args, **kwargs)
            return functools.wraps(task)(handler)
        return decorate


def answer(run_name: str, rows: float, request: gr.Request):
    return f"{run_name}: {rows} rows"


def stream(run_name: str, rows: float, request: gr.Request):
    yield f"{run_name}: {rows} rows"


def rows_seconds(run_name, rows, request):
    return inference_seconds(int(rows))


def test_without_spaces_handlers_are_left_as_they_are(monkeypatch):
    monkeypatch.setitem(sys.modules, "spaces", None)  # `import spaces` raises ImportError
    assert not on_zerogpu()
    assert gpu_job(rows_seconds)(answer) is answer
    assert gpu_job(rows_seconds)(stream) is stream


@pytest.mark.parametrize("zero_gpu", [True, False])
def test_on_zerogpu_follows_the_spaces_package(monkeypatch, zero_gpu):
    monkeypatch.setitem(sys.modules, "spaces", FakeSpaces(zero_gpu))
    assert on_zerogpu() is zero_gpu


@pytest.mark.parametrize("handler", [answer, stream])
def test_on_zerogpu_each_call_asks_for_the_time_its_arguments_need(monkeypatch, handler):
    spaces = FakeSpaces(zero_gpu=True)
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    decorated = gpu_job(rows_seconds)(handler)
    assert decorated is not handler
    for rows in (100, 3000):
        result = decorated("moons", rows, request=None)
        assert list(result) if inspect.isgenerator(result) else result
    assert spaces.requested == [inference_seconds(100), inference_seconds(3000)]
    assert spaces.requested[0] < spaces.requested[1]


@pytest.mark.parametrize("handler", [answer, stream])
def test_gradio_still_sees_the_request_parameter_and_the_generator(monkeypatch, handler):
    monkeypatch.setitem(sys.modules, "spaces", FakeSpaces(zero_gpu=True))
    decorated = gpu_job(rows_seconds)(handler)
    assert get_type_hints(decorated)["request"] is gr.Request
    assert list(inspect.signature(decorated).parameters) == ["run_name", "rows", "request"]
    assert inspect.isgeneratorfunction(decorated) == inspect.isgeneratorfunction(handler)


def test_every_request_is_whole_seconds_within_the_cap(monkeypatch):
    spaces = FakeSpaces(zero_gpu=True)
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    for seconds in (0.2, 45.5, 10_000):
        gpu_job(lambda: seconds)(lambda: None)()
    assert spaces.requested == [1, 46, MAX_SECONDS]


def test_inference_time_is_loading_then_answers_at_the_measured_or_default_speed():
    assert inference_seconds(0) == LOAD_SECONDS
    assert inference_seconds(1000, seconds_per_answer=0.002) == LOAD_SECONDS + 2
    assert inference_seconds(1000) == LOAD_SECONDS + math.ceil(1000 * zerogpu.DEFAULT_SECONDS_PER_ANSWER)
    assert inference_seconds(60 * 60 * 10, seconds_per_answer=0.05) == MAX_SECONDS
