"""The GPU check (bench/gpu.py) as CI can run it: its dry run takes, on the CPU with the tiny model, the code path a
GPU takes; without CUDA the check itself says so in one line."""

import pytest
import torch

from bench import gpu, report


def table_rows(out: str, first_cell: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith(f"| {first_cell} |")]


@pytest.mark.slow
def test_the_dry_run_measures_every_part_with_the_tiny_model_and_writes_nothing(capsys, monkeypatch,
                                                                                 one_torch_thread):
    monkeypatch.setattr(report, "write_section", lambda *args, **kwargs: pytest.fail("the dry run wrote"))
    assert gpu.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    training = [row for row in table_rows(out, "tiny") if len(row) == 7]
    configurations = {(weights, kind.split(",")[0]) for _, weights, kind, *_ in training}
    assert configurations == {(weights, kind) for weights in ("its own", "random (tiny's tokenizer)")
                              for kind in ("LoRA", "QLoRA")}, out
    # A moons row is about 30 tiny tokens; the dry run's batch of 2 (not the default 4) tells a wrong divisor.
    assert all(20 <= int(row[3]) <= 40 and float(row[5]) > 0 and row[6] == "unknown card" for row in training), out
    memory_rows = [row for row in table_rows(out, "tiny") if len(row) == 11]
    assert len(memory_rows) == 4 and all(row[6] != "—" and row[7:] == ["—"] * 4 for row in memory_rows), out
    exhaustive, adaptive = table_rows(out, "exhaustive"), table_rows(out, "adaptive")
    assert exhaustive[0][2:] == ["144", "100.0%"]  # every point of the 12×12 map answered
    assert 0 < int(adaptive[0][2]) <= 144 and 0 <= float(adaptive[0][3].rstrip("%")) <= 100
    assert "Two-process DDP: skipped" in out and ": failed:" not in out


def test_without_cuda_the_check_says_so_in_one_line_and_succeeds(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 0
    assert capsys.readouterr().out == gpu.NO_GPU + "\n"


def test_parts_that_do_not_fit_the_budget_are_skipped_saying_so(capsys):
    assert gpu.main(["--dry-run", "--budget-s", "0"]) == 0
    published = capsys.readouterr().out.split("`python -m bench.gpu --dry-run` on ")[1]  # after the progress lines
    assert published.count("skipped, it needs about") == 4  # the four trainings
    assert "Boundary map: skipped, the tiny LoRA run is missing." in published and "| tiny |" not in published


def test_the_dry_run_never_writes_benchmarks():
    with pytest.raises(SystemExit):
        gpu.main(["--dry-run", "--write-benchmarks"])


@pytest.mark.parametrize("card, flops", [("NVIDIA H200", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                         ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12),
                                         ("NVIDIA A10G", 70e12), ("NVIDIA L4", 121e12), ("Tesla T4", 65e12),
                                         ("NVIDIA L40S", None), ("NVIDIA GeForce RTX 4090", None)])
def test_the_peak_flops_are_found_by_card_name(card, flops):
    assert gpu.peak_flops(card) == flops


def test_the_steady_rate_leaves_out_the_warm_up_and_the_evaluation_after_the_last_step():
    # A slow first step, then 0.5 s and 100 tokens a step; the last step logged again after its evaluation.
    elapsed = {1: 3.0, 2: 3.5, 3: 4.0, 4: 4.5}
    rows = [{"step": step, "elapsed_s": seconds, "tokens_per_s": 100 * step / seconds}
            for step, seconds in elapsed.items()]
    rows.append({"step": 4, "elapsed_s": 9.0, "tokens_per_s": 400 / 9.0})
    step_s, tokens_per_s = gpu.steady_rate(rows, warmup=2)
    assert step_s == pytest.approx(0.5) and tokens_per_s == pytest.approx(200)
