"""The load benchmark, run small so that it cannot rot: app.py as shipped, two sessions for a few seconds while a
`tiny` training runs."""

import pytest
from helpers import ONE_THREAD_ENV

from bench import bench_load


@pytest.mark.slow
def test_the_load_benchmark_times_every_page_call_while_the_server_trains_and_refuses_a_second_training(
        monkeypatch, one_torch_thread):
    for name, value in ONE_THREAD_ENV.items():
        monkeypatch.setenv(name, value)  # inherited by the server and its training
    report = bench_load.main(["--clients", "2", "--duration", "8", "--model", "tiny"])
    endpoints = report["endpoints"]
    assert all(endpoints[name]["calls"] for name in ("preview_prompts", "select", "status")), endpoints
    assert not any(stats["failed"] for stats in endpoints.values()), report["errors_sample"]
    # The tiny run may finish within the window, and then a session's Start is rightly accepted.
    assert report["starts"]["accepted"] >= 1 and sum(report["starts"].values()) == 3, report["starts"]
    assert report["steps"][1] >= 1
