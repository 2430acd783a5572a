"""Grid inference for decision boundaries and variance maps: the fast path against the alternatives.

    python -m bench.bench_grid [--model smollm2-135m] [--steps 40] [--points 400] [--write-benchmarks]

Trains a short run on moons (accuracy is beside the point: every method answers the same prompts of the same
model), then times, on the same grid points and in this one process:
- the paper's way: transformers' `generate`, one sampled answer per prompt (on a subset, per point);
- batched greedy `generate` (batch 64, left padded), and the shipped greedy answers;
- plain label scoring: every prompt in full, the LoRA adapter applied on the fly;
- the shipped fast path (Predictor.from_run): adapter merged into the weights, prompts sorted so a batch shares
  its prefix (run once), the answers' common first token run with the prompt;
- the fast path with dynamic int8 Linear layers (kept out of the product unless it agrees and is faster);
- wall time of the fast path against grid resolution, and the classification variance map (spread from the
  scored probabilities, in the same pass) against 10 sampled answers per point.
Ratios are what to compare across machines. Run it alone: other work on the cores skews every timing.
"""

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.report import publish
from lift_core import decoding, models, synthetic
from lift_core.boundary import explorable_features, grid_over
from lift_core.config import TrainConfig
from lift_core.predict import Predictor
from lift_core.runs import Run
from lift_core.training import run_training

PAPER_SUBSET = 16  # per-prompt sampling is slow: timed on this many points, reported per point


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def train_run(folder: Path, model: str, steps: int) -> Run:
    table = folder / "moons.csv"
    synthetic.make_classification("moons", n=500, noise=0.1, seed=0).to_csv(table, index=False)
    return run_training(TrainConfig(data=str(table), target="y", model=model, quant="none", max_steps=steps),
                        folder / "run")


def unmerged_predictor(run: Run, batch_size: int = 32) -> Predictor:
    from peft import PeftModel

    loaded = models.load_model(run.config().model, "none")
    model = PeftModel.from_pretrained(loaded.model, run.adapter_dir)
    predictor = Predictor.for_run(run, model, loaded.tokenizer)
    predictor.batch_size = batch_size
    return predictor


@torch.no_grad()
def transformers_generate(predictor: Predictor, grid: pd.DataFrame, batch_size: int, sample: bool) -> list[str]:
    """transformers' own `generate` over the grid's prompts, left padded, stopped at the answer terminator."""
    tokenizer, answers = predictor.tokenizer, []
    prompts = [predictor.template.prompt(row) for row in grid.to_dict("records")]
    for start in range(0, len(prompts), batch_size):
        encoded = [tokenizer(text)["input_ids"] for text in prompts[start:start + batch_size]]
        width = max(map(len, encoded))
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(e)) + e for e in encoded])
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        sampling = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
        out = predictor.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6,
                                       pad_token_id=tokenizer.pad_token_id, stop_strings=["@@@"], tokenizer=tokenizer,
                                       **sampling)
        answers += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return answers


def plain_probabilities(predictor: Predictor, grid: pd.DataFrame) -> np.ndarray:
    """Label scoring without prefix sharing: every prompt in full."""
    shared = decoding.MIN_SHARED_PROMPT_TOKENS
    decoding.MIN_SHARED_PROMPT_TOKENS = 10**9
    try:
        return predictor.class_probabilities(grid)
    finally:
        decoding.MIN_SHARED_PROMPT_TOKENS = shared


def grid_of(run: Run, points: int) -> pd.DataFrame:
    resolution = int(round(points ** 0.5))
    return grid_over(run.split("train"), explorable_features(run), resolution=resolution, margin=0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--points", type=int, default=400)
    parser.add_argument("--resolutions", default="20,40,60")
    parser.add_argument("--write-benchmarks", action="store_true")
    args = parser.parse_args()
    rows = []  # (what, ms per point, ratio to batched greedy generate, note)
    with tempfile.TemporaryDirectory() as folder:
        run = train_run(Path(folder), args.model, args.steps)
        grid = grid_of(run, args.points)
        plain = unmerged_predictor(run)
        fast = Predictor.from_run(run)
        n_params = sum(parameter.numel() for parameter in fast.model.parameters())

        _, paper_s = timed(transformers_generate, plain, grid.head(PAPER_SUBSET), batch_size=1, sample=True)
        greedy, greedy_s = timed(transformers_generate, plain, grid, batch_size=64, sample=False)
        ours, ours_s = timed(fast.sample_answers, grid, k=1, temperature=0.0)
        reference, plain_s = timed(plain_probabilities, plain, grid)
        fast_proba, fast_s = timed(fast.class_probabilities, grid)
        per_point = {"paper": paper_s / PAPER_SUBSET, "greedy": greedy_s / len(grid)}
        agreement = float(np.mean(reference.argmax(1) == fast_proba.argmax(1)))
        max_difference = float(np.abs(reference - fast_proba).max())

        def add(what, seconds_per_point, note=""):
            rows.append((what, 1000 * seconds_per_point, per_point["greedy"] / seconds_per_point, note))

        add("paper: one sampled `generate` per prompt", per_point["paper"], f"timed on {PAPER_SUBSET} points")
        add("batched greedy `generate` (batch 64)", per_point["greedy"])
        add("greedy answers, shipped (shared prefix, merged adapter, own decoding loop)", ours_s / len(grid),
            f"same answers as `generate` on {np.mean([a == b[0] for a, b in zip(greedy, ours)]):.1%} of points")
        prompt_tokens = np.mean([len(fast.tokenizer(fast.template.prompt(row))["input_ids"])
                                 for row in grid.head(64).to_dict("records")])
        gflops = 2 * n_params * prompt_tokens * len(grid) / plain_s / 1e9
        add("label scoring, plain (full prompts, adapter unmerged)", plain_s / len(grid),
            f"≈{gflops:.0f} GFLOP/s on the prompt tokens")
        add(f"label scoring, fast path (shipped, batch {fast.batch_size})", fast_s / len(grid),
            f"classes agree on {agreement:.1%}, max |Δp| {max_difference:.1e}")
        shipped_batch = fast.batch_size
        for batch_size in (16, 32, 128):
            fast.batch_size = batch_size
            _, seconds = timed(fast.class_probabilities, grid)
            add(f"fast path, batch {batch_size}", seconds / len(grid))
        fast.batch_size = shipped_batch

        int8 = Predictor(torch.ao.quantization.quantize_dynamic(copy.deepcopy(fast.model), {torch.nn.Linear},
                                                                dtype=torch.qint8),
                         fast.tokenizer, fast.template, fast.task, fast.classes)
        int8_proba, int8_s = timed(int8.class_probabilities, grid)
        add("fast path + dynamic int8 Linear (not shipped)", int8_s / len(grid),
            f"classes agree on {np.mean(int8_proba.argmax(1) == reference.argmax(1)):.1%}, "
            f"max |Δp| {np.abs(int8_proba - reference).max():.1e}")

        subset = grid.sample(n=min(40, len(grid)), random_state=0)
        _, sampled_s = timed(fast.predict, subset, samples=10, temperature=1.0)
        variance_ratio = (sampled_s / len(subset)) / (fast_s / len(grid))

        scaling = []
        for resolution in map(int, args.resolutions.split(",")):
            full = grid_over(run.split("train"), explorable_features(run), resolution=resolution, margin=0.2)
            _, seconds = timed(fast.class_probabilities, full)
            scaling.append((resolution, len(full), seconds))
    table = markdown(rows, variance_ratio, scaling, args, len(grid), len(greedy))
    publish("grid", table, args.write_benchmarks)


def markdown(rows, variance_ratio, scaling, args, n_points, n_answers) -> str:
    lines = [f"`python -m bench.bench_grid --model {args.model} --steps {args.steps} --points {args.points}` "
             f"({torch.get_num_threads()} threads; {n_points} grid points of a moons run, {n_answers} answers "
             "each for generate):", "",
             "| method | ms per point | speed-up over batched greedy generate | note |", "|---|---|---|---|"]
    lines += [f"| {what} | {ms:.1f} | {ratio:.2f}x | {note} |" for what, ms, ratio, note in rows]
    lines += ["", f"Classification variance map from the scored probabilities: computed in the boundary's own pass "
              f"(1.0x a boundary); 10 sampled answers per point cost {variance_ratio:.1f}x a boundary.", "",
              "| grid | points | seconds (fast path) | ms per point |", "|---|---|---|---|"]
    lines += [f"| {resolution}x{resolution} | {points} | {seconds:.1f} | {1000 * seconds / points:.1f} |"
              for resolution, points, seconds in scaling]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
