"""Training speed on this machine: LIFT's Trainer against a bare transformers + peft loop, and the CPU settings.

    python -m bench.bench_speed [--model smollm2-135m] [--steps 12] [--batch-size 4] [--features 2]
                                [--lora-layers 20,10,5]

All measurements run in one process on the same batches, so the ratios hold even where the machine's absolute
speed differs from session to session. The first 2 steps of each measurement are warm-up and not timed.
Prints Markdown rows for BENCHMARKS.md. Run it alone: other processes on the cores distort every number.
"""

import argparse
import tempfile
import time

import numpy as np
import pandas as pd
import torch

from lift_core import models, synthetic
from lift_core.batches import PadCollator, StratifiedSampler, balance_groups
from lift_core.callbacks import TrainingClock
from lift_core.config import TrainConfig
from lift_core.encoding import encode_examples
from lift_core.loss import checked_lower_cache
from lift_core.prompts import PromptTemplate
from lift_core.trainer import build_trainer, training_arguments

WARMUP = 2


def table(n: int, n_features: int) -> tuple[pd.DataFrame, PromptTemplate]:
    """moons, with extra noise columns to lengthen the prompt like a wider table."""
    frame = synthetic.make_classification("moons", n=n, seed=0)
    rng = np.random.default_rng(0)
    for index in range(3, n_features + 1):
        frame.insert(index - 1, f"x{index}", rng.normal(size=n))
    frame["y"] = frame["y"].astype(str)
    return frame, PromptTemplate(features=[f"x{i}" for i in range(1, n_features + 1)], target="y")


def lora_model(name: str, lora_layers: int = 0):
    torch.manual_seed(0)
    loaded = models.load_model(name, "none")
    return models.add_lora(loaded, TrainConfig(lora_layers=lora_layers).lora_settings()), loaded.tokenizer


def bare_loop(model, batches, autocast_bf16: bool = False, warmup: int = WARMUP) -> float:
    """Seconds per step of the textbook loop: the model's own loss (logits at every position), AdamW."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for index, batch in enumerate(batches):
        if index == warmup:
            started = time.perf_counter()
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            loss = model(**{k: v.to(model.device) for k, v in batch.items() if k != "decision_index"}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - started) / (len(batches) - warmup)


def lift_trainer(model, examples, groups, steps: int, batch_size: int, collator, lora_layers: int = 0,
                 timed_from: int = WARMUP) -> float:
    """Seconds per step of LIFT Studio's own training path, with the Trainer's bookkeeping; with `lora_layers`,
    through the frozen layers' cache (steps after `timed_from`, once every row has been seen)."""
    from transformers import TrainerCallback

    from lift_core.runs import Run

    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(batch_size=batch_size, max_steps=steps, logging_steps=5)
        numbered = [{**example, "row": number} for number, example in enumerate(examples)]
        lower_cache = checked_lower_cache(model, lora_layers, collator(numbered[:batch_size]))
        trainer = build_trainer(None, groups, TrainingClock(), lower_cache, model=model,
                                args=training_arguments(config, Run(folder), steps, has_validation=False),
                                train_dataset=numbered, data_collator=collator, callbacks=[Clock()])
        trainer.train()
    return (marks[steps] - marks[timed_from]) / (steps - timed_from)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--lora-layers", default="20,10,5",
                        help="LoRA on the top N layers with the layers below cached, for each N; 0 or empty: skip")
    args = parser.parse_args()
    if args.steps <= WARMUP:
        parser.error(f"--steps must be more than the {WARMUP} warm-up steps")
    frame, template = table(args.steps * args.batch_size, args.features)
    model, tokenizer = lora_model(args.model)

    started = time.perf_counter()
    examples = encode_examples(frame, template, tokenizer)
    encode_ms = (time.perf_counter() - started) * 1000 / len(examples)
    collator = PadCollator(tokenizer.pad_token_id)
    groups = balance_groups(frame, "y", "classification")
    order = list(StratifiedSampler(groups, seed=0))
    ordered = [examples[i] for i in order]
    started = time.perf_counter()
    batches = [collator(ordered[i:i + args.batch_size]) for i in range(0, len(ordered), args.batch_size)]
    collate_ms = (time.perf_counter() - started) * 1000 / len(batches)
    real = sum(len(example["input_ids"]) for example in examples)
    padded = sum(batch["input_ids"].numel() for batch in batches)
    tokens_per_step = real / len(batches)

    rows = []
    threads = torch.get_num_threads()
    loop_s = bare_loop(model, batches)
    rows.append(("bare transformers + peft loop (model's loss, all logits)", threads, loop_s))
    model, _ = lora_model(args.model)
    lift_s = lift_trainer(model, examples, groups, args.steps, args.batch_size, collator)
    rows.append(("LIFT Studio Trainer (answer-column logits, stratified batches)", threads, lift_s))
    if threads > 1:
        torch.set_num_threads(1)
        model, _ = lora_model(args.model)
        rows.append(("bare loop, 1 thread", 1, bare_loop(model, batches)))
        torch.set_num_threads(threads)
    for lora_layers in [int(n) for n in args.lora_layers.split(",") if int(n or 0)]:
        # Every row comes back after the first epoch, from the cache: steps 2 epochs in are timed.
        model, _ = lora_model(args.model, lora_layers)
        epoch = len(batches)
        seconds = lift_trainer(model, examples, groups, 3 * epoch, args.batch_size, collator, lora_layers, 2 * epoch)
        rows.append((f"LIFT Studio Trainer, LoRA on the top {lora_layers} layers, the layers below cached", threads,
                     seconds))
    model, _ = lora_model(args.model)
    # Without avx512_bf16 a bf16 step takes a minute: one warm-up step and one timed step are enough to tell.
    rows.append(("bare loop, bf16 autocast", threads, bare_loop(model, batches[:2], autocast_bf16=True, warmup=1)))

    print(f"{args.model}, batch {args.batch_size}, {args.features} features, {tokens_per_step / args.batch_size:.0f} "
          f"tokens per example; CPU flags: avx512_bf16={'avx512_bf16' in open('/proc/cpuinfo').read()}")
    print("| path | threads | s/step | tokens/s | speed vs bare loop |")
    print("|---|---|---|---|---|")
    for name, n_threads, seconds in rows:
        print(f"| {name} | {n_threads} | {seconds:.3f} | {tokens_per_step / seconds:.0f} | {loop_s / seconds:.2f}x |")
    print(f"\ntokenization {encode_ms:.2f} ms/example, collation {collate_ms:.2f} ms/batch "
          f"({collate_ms / 1000 / lift_s:.2%} of a step); real/padded tokens {real / padded:.3f}")


if __name__ == "__main__":
    main()
