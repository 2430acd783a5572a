"""Decision-boundary maps: adaptive refinement against answering every cell, and against transformers' `generate`.

    python -m bench.bench_grid [--model smollm2-135m] [--shapes moons,circles,spiral] [--resolution 60]
                               [--generate-cells 600] [--variance-resolution 30] [--runs-dir DIR] [--write-benchmarks]

Trains one run per shape with the product's default settings (or reuses it from --runs-dir), loads its model once
(the shipped fast path: adapter merged, prompts sharing their prefix), then times in this one process:
- the adaptive map (the default) and the time to its first picture;
- the exhaustive map (every cell answered, `boundary --exhaustive`), the reference for class agreement and the
  largest probability difference;
- batched greedy `generate` (batch 64, left padded) over the map's cells: timed on --generate-cells random cells
  and scaled to the whole map, as its time per cell does not depend on which cells;
- the sampled variance map (5 answers per cell) adaptive against exhaustive, on the first shape, at
  --variance-resolution;
- weight-only int8 matrix products, the cheaper-point path the issue asks about, against fp32 on one layer's shape.
Ratios are what to compare across machines. Run it alone: other work on the cores skews every timing.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.bench_estimate import cpu_flags
from bench.report import publish
from lift_core import models, synthetic
from lift_core.boundary import boundary_levels, explorable_features, grid_over, model_boundary
from lift_core.config import TrainConfig
from lift_core.predict import Predictor
from lift_core.runs import Run
from lift_core.training import run_training

GENERATE_BATCH = 64
VARIANCE_SAMPLES = 5


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def trained_run(folder: Path, model: str, kind: str) -> Run:
    """The shape's run with the default training settings, trained once per folder."""
    run_dir = folder / f"{model}-{kind}"
    if run_dir.exists() and Run(run_dir).eval_results():
        return Run(run_dir)
    table = folder / f"{kind}.csv"
    synthetic.make_classification(kind, n=500, noise=0.1, seed=0).to_csv(table, index=False)
    return run_training(TrainConfig(data=str(table), target="y", model=model, quant="none"), run_dir)


@torch.no_grad()
def greedy_generate(predictor: Predictor, grid: pd.DataFrame) -> list[str]:
    """transformers' own batched greedy `generate` over the grid's prompts, stopped at the answer terminator."""
    tokenizer, answers = predictor.tokenizer, []
    prompts = [predictor.template.prompt(row) for row in grid.to_dict("records")]
    for start in range(0, len(prompts), GENERATE_BATCH):
        encoded = [tokenizer(text)["input_ids"] for text in prompts[start:start + GENERATE_BATCH]]
        width = max(map(len, encoded))
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(e)) + e for e in encoded])
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        out = predictor.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id, stop_strings=["@@@"], tokenizer=tokenizer)
        answers += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return answers


def first_picture_seconds(run: Run, predictor: Predictor, resolution: int) -> float:
    started = time.perf_counter()
    next(boundary_levels(run, resolution=resolution, predictor=predictor))
    return time.perf_counter() - started


def compare_maps(run: Run, predictor: Predictor, resolution: int, generate_cells: int) -> dict:
    adaptive, adaptive_s = timed(model_boundary, run, resolution=resolution, predictor=predictor)
    exact, exact_s = timed(model_boundary, run, resolution=resolution, predictor=predictor, exhaustive=True)
    grid = grid_over(run.split("train"), explorable_features(run), resolution=resolution, margin=0.2)
    subset = grid.sample(n=min(generate_cells, len(grid)), random_state=0)
    _, subset_s = timed(greedy_generate, predictor, subset)
    probabilities = [column for column in exact.columns if column.startswith("p_")]
    difference = np.abs(adaptive[probabilities].to_numpy() - exact[probabilities].to_numpy()).max(axis=1)
    return {"accuracy": run.eval_results()["accuracy"], "first_s": first_picture_seconds(run, predictor, resolution),
            "adaptive_s": adaptive_s, "exact_s": exact_s, "generate_s": subset_s * len(grid) / len(subset),
            "scored": int(adaptive["scored"].sum()), "cells": len(grid),
            "agreement": float((adaptive["y_pred"] == exact["y_pred"]).mean()),
            "within": float((difference <= 0.05).mean()), "max_difference": float(difference.max())}


def compare_variance(run: Run, predictor: Predictor, resolution: int) -> dict:
    options = {"resolution": resolution, "predictor": predictor, "samples": VARIANCE_SAMPLES}
    adaptive, adaptive_s = timed(model_boundary, run, **options)
    exact, exact_s = timed(model_boundary, run, exhaustive=True, **options)
    return {"adaptive_s": adaptive_s, "exact_s": exact_s, "scored": int(adaptive["scored"].sum()),
            "cells": len(exact), "spread_difference": float(np.abs(adaptive["spread"] - exact["spread"]).mean())}


def int8_matmul_ratio(predictor: Predictor) -> tuple[float, float, float]:
    """(fp32 ms, int8 weight-only ms, largest relative error) of one MLP projection over a batch of prompt tokens:
    torch's own weight-only int8 kernel (`_weight_int8pack_mm`, per-channel scales)."""
    layer = next(module for name, module in predictor.model.named_modules() if name.endswith("mlp.up_proj"))
    weight = layer.weight.detach().float()
    tokens = torch.randn(GENERATE_BATCH * 15, weight.shape[1])
    scales = weight.abs().amax(dim=1) / 127
    quantized = (weight / scales[:, None]).round().to(torch.int8)
    _, fp32_s = timed(lambda: [tokens @ weight.T for _ in range(5)])
    product, int8_s = timed(lambda: [torch.ops.aten._weight_int8pack_mm(tokens, quantized, scales)
                                     for _ in range(5)])
    reference = tokens @ weight.T
    error = float(((product[0] - reference).abs().max() / reference.abs().max()))
    return 200 * fp32_s, 200 * int8_s, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--shapes", default="moons,circles,spiral")
    parser.add_argument("--resolution", type=int, default=60)
    parser.add_argument("--generate-cells", type=int, default=600)
    parser.add_argument("--variance-resolution", type=int, default=30)
    parser.add_argument("--runs-dir", help="where the runs are trained (and reused from); default: a temporary folder")
    parser.add_argument("--write-benchmarks", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.runs_dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        maps, variance = {}, None
        for kind in args.shapes.split(","):
            run = trained_run(folder, args.model, kind)
            predictor = Predictor.from_run(run)
            maps[kind] = compare_maps(run, predictor, args.resolution, args.generate_cells)
            if variance is None:
                variance = compare_variance(run, predictor, args.variance_resolution)
                int8 = int8_matmul_ratio(predictor)
    publish("grid", markdown(maps, variance, int8, args), args.write_benchmarks)


def markdown(maps: dict, variance: dict, int8: tuple, args) -> str:
    first = next(iter(maps))
    lines = [f"`python -m bench.bench_grid --model {args.model} --shapes {args.shapes} --resolution "
             f"{args.resolution} --generate-cells {args.generate_cells} --variance-resolution "
             f"{args.variance_resolution}`. Machine: {models.hardware_summary()}; CPU flags: {cpu_flags()}; "
             f"{torch.get_num_threads()} threads. One run per shape, default training settings (500 rows, noise "
             "0.1). Greedy `generate` timed on "
             f"{args.generate_cells} random cells and scaled to the map.", "",
             "| shape | test accuracy | adaptive s | first picture s | exhaustive s | greedy `generate` s | "
             "cells answered | speed-up over `generate` | over exhaustive | class agreement | "
             "probabilities within 0.05 | largest difference |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, m in maps.items():
        lines.append(
            f"| {kind} | {m['accuracy']:.3f} | {m['adaptive_s']:.1f} | {m['first_s']:.2f} | {m['exact_s']:.1f} | "
            f"{m['generate_s']:.1f} | {m['scored']:,} of {m['cells']:,} ({m['scored'] / m['cells']:.0%}) | "
            f"{m['generate_s'] / m['adaptive_s']:.1f}x | {m['exact_s'] / m['adaptive_s']:.1f}x | "
            f"{m['agreement']:.2%} | {m['within']:.2%} | {m['max_difference']:.3f} |")
    v = variance
    fp32_ms, int8_ms, error = int8
    lines += ["", f"Sampled variance map ({VARIANCE_SAMPLES} answers per cell, temperature 1) of the {first} run, "
              f"{args.variance_resolution}x{args.variance_resolution}: adaptive {v['adaptive_s']:.1f} s "
              f"({v['scored']:,} of {v['cells']:,} cells sampled) against exhaustive {v['exact_s']:.1f} s: "
              f"{v['exact_s'] / v['adaptive_s']:.1f}x cheaper; mean |vote-entropy difference| "
              f"{v['spread_difference']:.3f} (sampling noise included: the two maps draw different samples).",
              "", f"Weight-only int8 (`torch.ops.aten._weight_int8pack_mm`) on one MLP projection of the model over "
              f"{GENERATE_BATCH * 15} prompt tokens: {int8_ms:.1f} ms against {fp32_ms:.1f} ms in fp32 "
              f"({fp32_ms / int8_ms:.2f}x), largest relative error {error:.1e}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
