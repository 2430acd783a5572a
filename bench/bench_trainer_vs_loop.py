"""Is the transformers Trainer slower than a plain PyTorch loop for LIFT's small LoRA steps?

    python -m bench.bench_trainer_vs_loop [--model smollm2-135m] [--steps 20] [--batch-size 8]

Both train the same LoRA model on the same batches; the first 2 steps are warm-up and not timed.
"""

import argparse
import tempfile
import time

import torch

from lift_core import models, synthetic
from lift_core.prompts import PromptTemplate
from lift_core.training import PadCollator, encode_examples

WARMUP = 2


def lora_model(name: str):
    loaded = models.load_model(name, "none")
    return models.add_lora(loaded, models.LoraSettings()), loaded.tokenizer


def examples(tokenizer, n: int):
    frame = synthetic.make_classification("moons", n=n, seed=0)
    frame["y"] = frame["y"].astype(str)
    template = PromptTemplate(features=["x1", "x2"], target="y")
    return encode_examples(frame, template, tokenizer)


def plain_loop(model, batches) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for index, batch in enumerate(batches):
        if index == WARMUP:
            started = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - started) / (len(batches) - WARMUP)


def with_trainer(model, data, collator, steps: int, batch_size: int) -> float:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as output:
        arguments = TrainingArguments(output_dir=output, per_device_train_batch_size=batch_size, max_steps=steps,
                                      learning_rate=1e-3, report_to="none", save_strategy="no", use_cpu=True,
                                      disable_tqdm=True, logging_steps=5, remove_unused_columns=False,
                                      dataloader_pin_memory=False, train_sampling_strategy="group_by_length")
        Trainer(model=model, args=arguments, train_dataset=data, data_collator=collator,
                callbacks=[Clock()]).train()
    return (marks[steps] - marks[WARMUP]) / (steps - WARMUP)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = lora_model(args.model)
    data = examples(tokenizer, args.steps * args.batch_size)
    collator = PadCollator(tokenizer.pad_token_id)
    batches = [collator(data[i:i + args.batch_size]) for i in range(0, len(data), args.batch_size)]
    loop_seconds = plain_loop(model, batches)
    model, tokenizer = lora_model(args.model)
    trainer_seconds = with_trainer(model, data, collator, args.steps, args.batch_size)
    print(f"| {args.model} | {args.batch_size} | {loop_seconds:.3f} | {trainer_seconds:.3f} | "
          f"{trainer_seconds / loop_seconds:.2f} |")


if __name__ == "__main__":
    main()
