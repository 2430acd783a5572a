"""How much memory a training run needs, said before it starts, against what this machine has free.

Per training process (one per GPU): the model's weights at the run's precision; the LoRA weights with their
gradients and AdamW state; the activations autograd keeps for the backward pass, with the logits over the
vocabulary (or the validation's, whichever is larger); and the runtime's own memory. Each data-parallel process holds the
whole model. `python -m bench.bench_memory` compares the estimate with measured peaks.
"""

import functools
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace

from lift_core import models
from lift_core.config import TrainConfig
from lift_core.data import load_table, prepare_dataset
from lift_core.encoding import cached_tokenizer, encode_examples
from lift_core.errors import LiftError

GIB = 2**30
# The runtime's own memory, measured rather than derived. CPU: the peak resident memory of a process that imports
# what every training process imports (lift_core.training, peft and transformers' Trainer: torch 2.13 CPU,
# transformers 5.24, Linux x86_64) and builds nothing: 544 MiB; bench/bench_memory.py measures it again. GPU: the
# CUDA context and kernels of one process, about 0.5 GiB with torch 2.x and CUDA 12 (what nvidia-smi shows for a
# process that has only initialised CUDA; not measured in this project, whose machines so far had no GPU).
CPU_RUNTIME_BYTES = 544 * 2**20
CUDA_RUNTIME_BYTES = GIB // 2
# 4 bits per weight; each block of 64 weights shares an 8-bit scale (double quantization), and each 256 blocks a
# 32-bit scale of those scales.
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)
# One byte per weight; the 32-bit scale of each output row is a rounding error.
INT8_BYTES_PER_WEIGHT = 1.0
# Everything bitsandbytes leaves unquantized (embeddings, output layer, norms) is cast to fp32 by peft's
# prepare_model_for_kbit_training; LoRA weights are fp32 at any precision (peft's autocast_adapter_dtype).
FP32_BYTES = 4
# Per LoRA weight: itself, its gradient, AdamW's two moments and the validator's copy of the best step's weights.
LORA_BYTES_PER_WEIGHT = 5 * FP32_BYTES
# Logits of the scored answer columns in fp32 (or their fp32 copy), their log-softmax and its gradient.
TRAIN_LOGIT_BYTES = 3 * FP32_BYTES
# Label scoring's logits over every class's answer tokens in fp32, and their log-softmax.
EVAL_LOGIT_BYTES = 2 * FP32_BYTES
# The CPU allocator (glibc) keeps what autograd frees in pieces: a forward pass of SmolLM2-135M grew the resident
# memory by 1.37-1.49 times the bytes autograd saved at 30 to 240 tokens per batch.
CPU_ACTIVATION_OVERHEAD = 1.4
# LIFT text tokenizes at about 2 bytes per token (digits are single tokens: a 68-byte moons example is 32 SmolLM2
# tokens); used where the model's tokenizer is not on this machine.
BYTES_PER_TOKEN = 2
# Rows tokenized to find the longest example: the longest ones in characters.
LONGEST_ROWS = 16


@dataclass(frozen=True)
class ExampleShape:
    """What the activations grow with: the longest example (the width of its batch) and its answer, in tokens, and
    the answers label scoring compares (1 for regression, which samples instead)."""

    tokens: int = 64
    answer_tokens: int = 4
    classes: int = 2
    rows: int = 500  # the table's rows: with lora_layers, each keeps its frozen layers' output


# The frozen layers' output (lora_layers) is kept for at most this many bytes; rows beyond it run those layers
# again each time, still without a backward pass. SmolLM2-135M keeps 2.3 KB per token: ~900,000 tokens.
CACHE_BUDGET_BYTES = 2 * 2**30

# Until a table is loaded: a row of a few features in the lift template.
TYPICAL_SHAPE = ExampleShape()


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per training process, and what this machine has for it."""

    weights: int
    lora: int  # LoRA weights, their gradients, AdamW state, the best step's copy
    activations: int
    runtime: int
    on_gpu: bool
    quantization: str = "none"
    processes: int = 1
    available: int | None = None  # the least free memory of the GPUs the run uses, or the RAM available
    where: str = ""  # "free on <GPU>" or "available RAM"
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.weights + self.lora + self.activations + self.runtime

    @property
    def needed(self) -> int:
        """What must be free: each GPU holds one process; a CPU holds them all."""
        return self.total if self.on_gpu else self.total * self.processes

    @property
    def fits(self) -> bool | None:
        return None if self.available is None else self.needed <= self.available

    def summary(self) -> str:
        unit = " per GPU" if self.on_gpu else (f" per process × {self.processes}" if self.processes > 1 else "")
        parts = (f"weights {readable_size(self.weights)} · LoRA+optimizer {readable_size(self.lora)} · activations "
                 f"{readable_size(self.activations)} · runtime {readable_size(self.runtime)}")
        line = f"Training memory ≈ {readable_size(self.total)}{unit} ({parts})"
        if self.available is not None:
            line += f" of {readable_size(self.available)} {self.where}"
        if self.fits is False:
            line = f"⚠️ {line}: **it will not fit.** {self._advice()}"
        return "  \n".join((line, *self.notes))

    def _advice(self) -> str:
        options = ["a smaller batch size"]
        if self.on_gpu and self.quantization != "4bit":
            options.append("4-bit quantization")
        return f"Try {', '.join(options)} or a smaller model."


def readable_size(n_bytes: float) -> str:
    """Bytes in the largest binary unit they fill at least once, to a tenth below 100: a tiny model's parts are
    KiB, where GiB would read 0.00."""
    for unit, size in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= size:
            break
    value = n_bytes / size
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def _wrapped_layers(architecture: models.Architecture, config: TrainConfig) -> list[tuple[int, int]]:
    """(in, out) features of the linear layers of a block that LoRA wraps."""
    layers = architecture.linear_layers()
    targets = config.lora_settings().target_modules
    return list(layers.values()) if targets == "all-linear" else [layers[name] for name in targets if name in layers]


def saved_per_token(architecture: models.Architecture, config: TrainConfig) -> int:
    """Elements autograd keeps per token and block for the backward pass, as counted with saved_tensors_hooks on
    SmolLM2-135M (16 h + 5 i + 2 kv + 7 r with LoRA on every linear layer): each LoRA layer's input after its
    dropout, the dropout's mask and lora_B's r inputs; the two norms' inputs; the rotated queries and keys, the
    values and the attention output; the MLP's gate, up and activation outputs."""
    lora = sum((2 if config.lora_dropout else 1) * n_in + config.lora_r
               for n_in, _ in _wrapped_layers(architecture, config))
    return (lora + 4 * architecture.hidden_size + 2 * architecture.kv_size
            + (3 if architecture.gated_mlp else 2) * architecture.intermediate_size)


def trained_layers(architecture: models.Architecture, config: TrainConfig) -> int:
    """The blocks that carry LoRA, and so keep activations for the backward pass."""
    return min(architecture.layers, config.lora_layers) if config.lora_layers else architecture.layers


def lora_parameters(architecture: models.Architecture, config: TrainConfig) -> int:
    wrapped = _wrapped_layers(architecture, config)
    return trained_layers(architecture, config) * sum(config.lora_r * (n_in + n_out) for n_in, n_out in wrapped)


def estimate_memory(architecture: models.Architecture, config: TrainConfig, shape: ExampleShape, *,
                    quantization: str, on_gpu: bool, element_bytes: int) -> MemoryEstimate:
    """The estimate for one process of `config`'s run, at a resolved quantization ("4bit", "8bit" or "none") on
    a GPU or a CPU whose compute dtype has `element_bytes` bytes."""
    linear = architecture.layers * architecture.layer_parameters
    per_weight = {"4bit": NF4_BYTES_PER_WEIGHT, "8bit": INT8_BYTES_PER_WEIGHT}.get(quantization)
    if per_weight is None:
        weights = architecture.parameters * element_bytes
    else:
        weights = linear * per_weight + (architecture.parameters - linear) * FP32_BYTES
    lora = lora_parameters(architecture, config) * LORA_BYTES_PER_WEIGHT
    if config.num_processes > 1:  # DDP's gradient buckets: a second copy of the LoRA gradients
        lora += lora_parameters(architecture, config) * FP32_BYTES
    activations = _activations(architecture, config, shape, element_bytes,
                               checkpointing=on_gpu and quantization != "none")
    if not on_gpu:
        activations *= CPU_ACTIVATION_OVERHEAD
    return MemoryEstimate(weights=round(weights), lora=round(lora), activations=round(activations),
                          runtime=CUDA_RUNTIME_BYTES if on_gpu else CPU_RUNTIME_BYTES, on_gpu=on_gpu,
                          quantization=quantization, processes=config.num_processes)


def _activations(architecture: models.Architecture, config: TrainConfig, shape: ExampleShape, element_bytes: int,
                 checkpointing: bool) -> float:
    """The larger of a training step's (saved activations and answer logits) and a validation batch's (label
    scoring's key/value cache and logits over every class's answer)."""
    tokens = config.batch_size * shape.tokens
    per_block = saved_per_token(architecture, config)
    # Gradient checkpointing (QLoRA on a GPU, see models.add_lora) keeps each block's input and recomputes one
    # block at a time.
    kept = trained_layers(architecture, config) * (architecture.hidden_size if checkpointing else per_block)
    if checkpointing:
        kept += per_block
    # Only the columns where an answer token is scored go through the output layer (loss.answer_loss).
    columns = min(shape.tokens, config.batch_size * shape.answer_tokens)
    train = tokens * kept * element_bytes + config.batch_size * columns * architecture.vocab_size * TRAIN_LOGIT_BYTES
    if trained_layers(architecture, config) < architecture.layers:  # the frozen layers' output, kept per row
        train += min(CACHE_BUDGET_BYTES, shape.rows * shape.tokens * architecture.hidden_size * element_bytes)
    if shape.classes < 2:
        return train
    rows = config.validation_batch_size * shape.classes
    cache = rows * shape.tokens * architecture.layers * 2 * architecture.kv_size * element_bytes
    logits = rows * shape.answer_tokens * architecture.vocab_size * EVAL_LOGIT_BYTES
    return max(train, cache + logits)


def training_memory(config: TrainConfig) -> MemoryEstimate | None:
    """The estimate for `config` on this machine, with its free memory; None for a model whose architecture is
    neither on this machine nor in the model list."""
    found = models.model_architecture(config.model, config.trust_remote_code)
    if found is None:
        return None
    architecture, source = found
    on_gpu = models.has_cuda()
    shape, shape_note = example_shape(config, local_tokenizer=source == "its config")
    estimate = estimate_memory(architecture, config, shape, quantization=models.resolve_quantization(config.quant),
                               on_gpu=on_gpu, element_bytes=models.compute_dtype().itemsize)
    notes = [shape_note] if shape_note else []
    if source != "its config":
        notes.append(f"Architecture from {source}: the model's config is not on this machine yet.")
    available, where = free_memory(config.num_processes) if on_gpu else (_memory_available(), "available RAM")
    return replace(estimate, available=available, where=where, notes=tuple(notes))


def memory_summary(config: TrainConfig) -> str:
    estimate = training_memory(config)
    if estimate is None:
        return (f"No memory estimate for `{config.model}`: its config is not on this machine and it is not one of "
                "the listed models.")
    return estimate.summary()


# How long a reading of the GPUs' free memory is reused: each costs a short subprocess.
FREE_GPU_MEMORY_TTL_S = 30
# Asked in a subprocess: in the web server itself, mem_get_info would create a CUDA context (several hundred MiB)
# on every GPU it asks about, held for the server's lifetime and taken from the trainings.
_FREE_GPU_MEMORY = ("import json, torch; print(json.dumps([[torch.cuda.mem_get_info(i)[0] for i in "
                    "range(torch.cuda.device_count())], torch.cuda.get_device_name(0)]))")


def free_memory(processes: int) -> tuple[int | None, str]:
    """The least free memory among the GPUs a run of `processes` processes uses (None when it cannot be read), and
    the first one's name."""
    reading = _free_gpu_memory(int(time.monotonic() // FREE_GPU_MEMORY_TTL_S))
    if reading is None:
        return None, "free on the GPU (unknown: it could not be read)"
    free, name = reading
    return min(free[:max(1, processes)]), f"free on {name}"


@functools.lru_cache(maxsize=1)
def _free_gpu_memory(period: int) -> tuple[list[int], str] | None:
    """Free bytes per visible GPU and the first one's name; `period` makes the cache expire."""
    result = subprocess.run([sys.executable, "-c", _FREE_GPU_MEMORY], capture_output=True, text=True)
    return tuple(json.loads(result.stdout)) if result.returncode == 0 else None


def _memory_available() -> int | None:
    """What Linux says can be allocated without swapping (MemAvailable); None elsewhere."""
    try:
        with open("/proc/meminfo") as meminfo:
            return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def example_shape(config: TrainConfig, local_tokenizer: bool = True) -> tuple[ExampleShape, str]:
    """The shape of the config's table (and a note when it is assumed): counted with the model's tokenizer when it
    is on this machine, else from the text's bytes, so that a hub id offline never waits for the network."""
    if not (config.data and config.target):
        return TYPICAL_SHAPE, f"Rows of {TYPICAL_SHAPE.tokens} tokens assumed until a table and target are chosen."
    table = {name: getattr(config, name) for name in TABLE_SETTINGS}
    try:
        return _table_shape(json.dumps(table), os.stat(config.data).st_mtime_ns,
                            config.model if local_tokenizer else None), ""
    except (LiftError, OSError) as error:
        return TYPICAL_SHAPE, f"Rows of {TYPICAL_SHAPE.tokens} tokens assumed: {error}"


# The settings that make a table's examples.
TABLE_SETTINGS = ("data", "target", "features", "task", "template", "template_text", "decimals", "trim_zeros",
                  "trust_remote_code")


@functools.lru_cache(maxsize=16)
def _table_shape(table_settings: str, modified_ns: int, tokenizer_model: str | None) -> ExampleShape:
    """Cached by the settings, the file's modification time (a table written again is read again) and the model."""
    config = TrainConfig.from_dict(json.loads(table_settings))
    dataset = prepare_dataset(load_table(config.data), config.target, features=config.features, task=config.task)
    template = config.template_for(dataset.features, dataset.target)
    examples = [template.example(row) for row in dataset.frame.to_dict("records")]
    longest = sorted(range(len(examples)), key=lambda i: -len("".join(examples[i]).encode()))[:LONGEST_ROWS]
    if tokenizer_model is None:  # and one end-of-text token
        lengths = [(math.ceil(len("".join(examples[i]).encode()) / BYTES_PER_TOKEN) + 1,
                    math.ceil(len(examples[i][1].encode()) / BYTES_PER_TOKEN) + 1) for i in longest]
    else:
        tokenizer = cached_tokenizer(tokenizer_model, config.trust_remote_code)
        lengths = [(len(example["input_ids"]), sum(label != -100 for label in example["labels"]))
                   for example in encode_examples(dataset.frame.iloc[longest], template, tokenizer)]
    return ExampleShape(tokens=max(tokens for tokens, _ in lengths), answer_tokens=max(answer for _, answer in lengths),
                        classes=len(dataset.classes) if dataset.task == "classification" else 1,
                        rows=len(dataset.frame))
