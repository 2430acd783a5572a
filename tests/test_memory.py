"""The model list (lift_core/models.py) and the training-memory estimate (lift_core/memory.py): architectures
against published parameter counts and the models transformers builds, each part of the estimate and how it scales,
what autograd really keeps, the Train tab's memory line, hub models without network, and (slow) the estimate
against the measured peak of real trainings."""

import os
import re
from dataclasses import replace

import pytest
import torch
from helpers import ONE_THREAD_ENV, two_gaussians, wait_for, write_table

from lift_core import cli, memory, models
from lift_core.config import TrainConfig
from lift_core.data import load_table, prepare_dataset
from lift_core.encoding import cached_tokenizer, encode_examples
from lift_core.errors import LiftError
from lift_core.launcher import TrainingLauncher
from lift_core.memory import ExampleShape, MemoryEstimate, estimate_memory
from lift_core.runs import Run
from lift_ui.tabs.train_tab import state_message

SMOLLM2 = models.LISTED_MODELS["smollm2-135m"].architecture
HUB_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
GIB = 2**30


def estimate(architecture=SMOLLM2, shape=ExampleShape(classes=1), quantization="none", on_gpu=False,
             element_bytes=4, **settings) -> MemoryEstimate:
    """The estimate for TrainConfig(**settings), by default on a CPU in fp32 without validation scoring."""
    return estimate_memory(architecture, TrainConfig(**settings), shape, quantization=quantization, on_gpu=on_gpu,
                           element_bytes=element_bytes)


# ---------- the model list ----------

@pytest.mark.parametrize("name", list(models.LISTED_MODELS))
def test_each_listed_architecture_gives_its_published_parameter_count(name):
    listed = models.LISTED_MODELS[name]
    assert listed.architecture.parameters == pytest.approx(listed.parameters, rel=0.02)


def transformers_config(name: str, architecture: models.Architecture):
    """The transformers config of a listed model's architecture, as its config.json on the hub has it."""
    from transformers import GPTJConfig, LlamaConfig, Qwen2Config

    if not architecture.gated_mlp:  # GPT-J: n_inner unset means 4 x n_embd
        return GPTJConfig(n_embd=architecture.hidden_size, n_layer=architecture.layers, n_head=architecture.heads,
                          vocab_size=architecture.vocab_size, n_positions=architecture.context_length,
                          tie_word_embeddings=False)
    kind = Qwen2Config if name.startswith("Qwen/") else LlamaConfig
    return kind(hidden_size=architecture.hidden_size, intermediate_size=architecture.intermediate_size,
                num_hidden_layers=architecture.layers, num_attention_heads=architecture.heads,
                num_key_value_heads=architecture.kv_heads, vocab_size=architecture.vocab_size,
                tie_word_embeddings=architecture.tied_embeddings,
                max_position_embeddings=architecture.context_length)


@pytest.mark.parametrize("name", [name for name in models.LISTED_MODELS if name != "tiny"])
def test_listed_architectures_count_what_transformers_builds_and_read_back_from_its_config(name):
    from transformers import AutoModelForCausalLM

    architecture = models.LISTED_MODELS[name].architecture
    config = transformers_config(name, architecture)
    assert models.Architecture.from_config(config) == architecture
    with torch.device("meta"):  # the module tree without memory
        model = AutoModelForCausalLM.from_config(config)
    built = sum(parameter.numel() for parameter in model.parameters())
    assert architecture.parameters == pytest.approx(built, rel=0.001)  # Qwen's attention biases are the difference


def test_tiny_reads_its_architecture_from_its_config_and_lora_counts_what_peft_trains():
    architecture, source = models.model_architecture("tiny")
    assert source == "its config" and architecture == models.LISTED_MODELS["tiny"].architecture
    loaded = models.load_model("tiny", "none")
    assert sum(parameter.numel() for parameter in loaded.model.parameters()) == architecture.parameters
    for targets in ("all-linear", "q_proj,v_proj"):
        config = TrainConfig(lora_r=4, lora_targets=targets)
        peft_model = models.add_lora(models.load_model("tiny", "none"), config.lora_settings())
        trained = sum(parameter.numel() for parameter in peft_model.parameters() if parameter.requires_grad)
        assert memory.lora_parameters(architecture, config) == trained, targets


def test_a_listed_hub_model_offline_comes_from_the_model_list_and_an_unknown_model_gets_no_estimate():
    assert models.model_architecture(HUB_MODEL) == (models.LISTED_MODELS[HUB_MODEL].architecture, "the model list")
    assert models.model_architecture("nobody-lift-test/no-such-model") is None
    assert "No memory estimate" in memory.memory_summary(TrainConfig(model="nobody-lift-test/no-such-model"))
    summary = memory.memory_summary(TrainConfig(model=HUB_MODEL))
    assert "Training memory ≈" in summary and "model list" in summary


# ---------- what autograd keeps ----------

def saved_bytes(model, input_ids, columns) -> int:
    """Bytes of the tensors autograd saves for the backward pass of one forward, parameters not counted."""
    parameters = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=input_ids, logits_to_keep=columns, use_cache=False)
    return sum(saved.values())


def test_the_saved_activations_per_token_are_what_autograd_keeps():
    # The decomposition counted on SmolLM2-135M, and the same formula checked on the tiny model here.
    assert memory.saved_per_token(SMOLLM2, TrainConfig()) == 16 * 576 + 5 * 1536 + 2 * 192 + 7 * 8
    config = TrainConfig(model="tiny")
    architecture, _ = models.model_architecture("tiny")
    model = models.add_lora(models.load_model("tiny", "none"), config.lora_settings())
    model.train()
    batch, tokens = 4, 30
    measured = saved_bytes(model, torch.randint(3, 300, (batch, tokens)), torch.arange(tokens - 4, tokens - 1))
    expected = batch * tokens * architecture.layers * memory.saved_per_token(architecture, config) * 4
    assert measured == pytest.approx(expected, rel=0.1)


# ---------- the parts of the estimate ----------

def test_activations_grow_with_the_batch_and_the_rows_and_nothing_else_does():
    base = estimate(batch_size=4, shape=ExampleShape(tokens=32, classes=1))
    for bigger in (estimate(batch_size=8, shape=ExampleShape(tokens=32, classes=1)),
                   estimate(batch_size=4, shape=ExampleShape(tokens=64, classes=1))):
        # About twice: twice the tokens, and the scored answer columns grow with the batch only.
        assert 1.7 * base.activations < bigger.activations < 2.5 * base.activations
        assert (bigger.weights, bigger.lora, bigger.runtime) == (base.weights, base.lora, base.runtime)


def test_the_logits_of_the_answer_columns_grow_with_the_vocabulary():
    shape = ExampleShape(tokens=40, answer_tokens=3, classes=1)
    small = estimate(shape=shape, batch_size=4)
    big = estimate(replace(SMOLLM2, vocab_size=SMOLLM2.vocab_size + 100_000), shape=shape, batch_size=4)
    columns = min(shape.tokens, 4 * shape.answer_tokens)
    logit_bytes = 4 * columns * 100_000 * memory.TRAIN_LOGIT_BYTES * memory.CPU_ACTIVATION_OVERHEAD
    assert big.activations - small.activations == pytest.approx(logit_bytes, abs=1)


def test_validation_scoring_of_many_classes_can_be_the_peak():
    few = estimate(shape=ExampleShape(tokens=32, answer_tokens=3, classes=2))
    many = estimate(shape=ExampleShape(tokens=32, answer_tokens=3, classes=50))
    assert few.activations == estimate(shape=ExampleShape(tokens=32, answer_tokens=3, classes=1)).activations
    assert many.activations > few.activations


def test_four_bit_weights_are_smaller_than_eight_bit_and_full_precision_but_the_embeddings_stay_fp32():
    weights = {quant: estimate(quantization=quant, on_gpu=True, element_bytes=2).weights
               for quant in ("4bit", "8bit", "none")}
    assert weights["4bit"] < weights["8bit"] < weights["none"] == SMOLLM2.parameters * 2
    linear = SMOLLM2.layers * SMOLLM2.layer_parameters
    assert weights["4bit"] == round(linear * memory.NF4_BYTES_PER_WEIGHT + (SMOLLM2.parameters - linear) * 4)
    assert memory.NF4_BYTES_PER_WEIGHT == pytest.approx(0.516, abs=0.001)


def test_on_a_gpu_quantized_training_checkpoints_the_activations():
    shape = ExampleShape(tokens=128, classes=1)
    full = estimate(shape=shape, on_gpu=True, element_bytes=2)
    quantized = estimate(shape=shape, quantization="4bit", on_gpu=True, element_bytes=2)
    assert quantized.activations < full.activations / 2
    on_cpu = estimate(shape=shape, element_bytes=2)
    assert full.activations == pytest.approx(on_cpu.activations / memory.CPU_ACTIVATION_OVERHEAD, abs=1)


def test_each_data_parallel_process_holds_the_whole_model_and_a_second_copy_of_the_lora_gradients():
    one = estimate(quantization="none", on_gpu=True, element_bytes=2)
    replicated = estimate(quantization="none", on_gpu=True, element_bytes=2, num_processes=4)
    assert (replicated.weights, replicated.activations, replicated.runtime) == (
        one.weights, one.activations, one.runtime)
    assert replicated.lora > one.lora  # DDP's gradient buckets


def test_lora_on_fewer_layers_needs_less_and_its_state_is_twenty_bytes_a_weight():
    everywhere, two = estimate(lora_r=8), estimate(lora_r=8, lora_targets="q_proj,v_proj")
    assert two.lora < everywhere.lora and two.activations < everywhere.activations
    lora_weights = SMOLLM2.layers * 8 * ((576 + 576) * 2 + (576 + 192) * 2 + (576 + 1536) * 2 + (1536 + 576))
    assert everywhere.lora == lora_weights * 20


def test_the_runtime_is_the_cuda_context_on_a_gpu_and_the_measured_process_on_a_cpu():
    assert estimate(on_gpu=True).runtime == memory.CUDA_RUNTIME_BYTES
    assert estimate().runtime == memory.CPU_RUNTIME_BYTES


# ---------- what the page says ----------

def test_the_summary_names_each_part_and_warns_when_it_will_not_fit():
    parts = {"weights": int(0.4 * GIB), "lora": int(0.05 * GIB), "activations": int(0.92 * GIB),
             "runtime": GIB // 2}
    fitting = MemoryEstimate(**parts, on_gpu=True, available=int(70.1 * GIB), where="free on NVIDIA H100")
    assert fitting.summary() == ("Training memory ≈ 1.9 GiB per GPU (weights 410 MiB · LoRA+optimizer 51.2 MiB · "
                                 "activations 942 MiB · runtime 512 MiB) of 70.1 GiB free on NVIDIA H100")
    tight = replace(fitting, available=GIB)
    assert tight.fits is False and tight.summary().startswith("⚠️ Training memory ≈ 1.9 GiB per GPU")
    assert "will not fit" in tight.summary() and "4-bit" in tight.summary()
    on_cpu = MemoryEstimate(**parts, on_gpu=False, processes=2, available=3 * GIB, where="available RAM")
    assert on_cpu.fits is False and "per process × 2" in on_cpu.summary()  # a CPU holds both processes
    assert MemoryEstimate(**parts, on_gpu=False).fits is None  # nothing to compare with


@pytest.mark.parametrize("n_bytes, shown", [(340 * 2**10, "340 KiB"), (5.44 * 2**20, "5.4 MiB"),
                                             (544 * 2**20, "544 MiB"), (GIB - 2**20, "1023 MiB"), (GIB, "1.0 GiB"),
                                             (70.14 * GIB, "70.1 GiB"), (0, "0.0 KiB")])
def test_sizes_are_shown_in_the_largest_unit_they_fill(n_bytes, shown):
    assert memory.readable_size(n_bytes) == shown


def test_the_tiny_models_memory_line_reads_in_kib_and_mib_not_zero_gib():
    line = memory.memory_summary(TrainConfig(model="tiny", quant="none"))
    assert line.startswith("Training memory ≈ ") and " MiB (weights " in line and "0.00" not in line
    assert re.search(r"weights \d+ KiB · LoRA\+optimizer \d+ KiB · activations [\d.]+ MiB · runtime 544 MiB\)",
                     line), line


def test_on_a_multi_gpu_machine_the_estimate_is_per_gpu_against_the_least_free_one(monkeypatch):
    monkeypatch.setattr(models, "has_cuda", lambda: True)
    monkeypatch.setattr(models, "compute_dtype", lambda: torch.bfloat16)
    # What the subprocess reads on a machine with 3 GPUs.
    monkeypatch.setattr(memory, "_free_gpu_memory", lambda period: ([70 * GIB, 50 * GIB, GIB], "NVIDIA H100 80GB HBM3"))
    found = memory.training_memory(TrainConfig(model="tiny", num_processes=2))
    assert found.available == 50 * GIB and found.where == "free on NVIDIA H100 80GB HBM3"
    tiny = models.LISTED_MODELS["tiny"].architecture
    assert found.weights == estimate(tiny, quantization="4bit", on_gpu=True, element_bytes=2).weights  # auto: 4-bit
    assert " per GPU " in found.summary() and found.fits


def test_free_gpu_memory_is_read_in_a_subprocess_and_unknown_when_it_cannot_be_read(monkeypatch):
    memory._free_gpu_memory.cache_clear()
    if torch.cuda.is_available():
        free, name = memory.free_memory(1)
        assert 0 < free <= torch.cuda.get_device_properties(0).total_memory and name.startswith("free on ")
    else:  # the subprocess finds no GPU to ask
        assert memory.free_memory(1) == (None, "free on the GPU (unknown: it could not be read)")
    assert not torch.cuda.is_initialized()  # this process made no CUDA context of its own


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's comparison")
def test_on_a_cpu_the_estimate_is_compared_with_the_available_ram():
    found = memory.training_memory(TrainConfig(model="tiny"))
    with open("/proc/meminfo") as meminfo:
        available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    # Other work on the machine moves it between the two readings.
    assert found.where == "available RAM" and found.available == pytest.approx(available, rel=0.5)
    assert "Rows of 64 tokens assumed" in found.summary()


def test_the_rows_are_counted_with_the_models_tokenizer_and_read_again_when_the_table_changes(tmp_path):
    path = write_table(two_gaussians(40), tmp_path / "table.csv")
    config = TrainConfig(data=path, target="y", model="tiny")
    shape, note = memory.example_shape(config)
    dataset = prepare_dataset(load_table(path), "y")
    template = config.template_for(dataset.features, "y")
    examples = encode_examples(dataset.frame, template, cached_tokenizer("tiny"))
    assert note == "" and shape.classes == 2
    assert shape.tokens == max(len(example["input_ids"]) for example in examples)
    assert shape.answer_tokens == max(sum(label != -100 for label in example["labels"]) for example in examples)
    by_bytes, _ = memory.example_shape(config, local_tokenizer=False)  # a hub model's tokenizer is not here
    assert shape.tokens / 2 < by_bytes.tokens < shape.tokens * 2

    longer = two_gaussians(40).assign(x3=123456.789, x4=-98765.4321)
    write_table(longer, path)
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))  # a later time, however coarse the clock
    assert memory.example_shape(config)[0].tokens > shape.tokens
    assert memory.example_shape(TrainConfig(data=str(tmp_path / "gone.csv"), target="y"))[0] == memory.TYPICAL_SHAPE


def test_the_memory_line_through_the_web_api(client, monkeypatch):
    line, message = client.predict(target=None, model="tiny", quant="none", batch_size=4, api_name="/memory")
    assert line.startswith("Training memory ≈") and ("available RAM" in line or "free on" in line)
    monkeypatch.setattr(memory, "_memory_available", lambda: 2**20)  # the server runs in this process
    monkeypatch.setattr(models, "has_cuda", lambda: False)
    line, message = client.predict(target=None, model=HUB_MODEL, quant="none", batch_size=4, api_name="/memory")
    assert line.startswith("⚠️ Training memory") and "will not fit" in line and "model list" in line


def test_a_setting_the_memory_line_cannot_use_is_said_once_in_the_message_line_until_it_is_fixed(client):
    line, message = client.predict(target=None, model="", quant="none", batch_size=4, api_name="/memory")
    assert line == "" and message.startswith("⚠️ Choose a model")
    # Fixed: the memory line is back, and the warning, now out of date, goes.
    line, message = client.predict(target=None, model="tiny", quant="none", batch_size=4, message_shown=message,
                                   api_name="/memory")
    assert line.startswith("Training memory ≈") and message == ""
    # Other news in the message line (a run started) stays: gradio's update that changes nothing.
    _, message = client.predict(target=None, model="tiny", quant="none", batch_size=4,
                                message_shown="Started run `x`.", api_name="/memory")
    assert message == {"__type__": "update"}


# ---------- hub models without network ----------

def test_a_hub_model_offline_ends_a_cli_run_with_one_clear_line_that_the_page_shows(tmp_path, capsys):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    data = write_table(two_gaussians(40), tmp_path / "table.csv")
    code = cli.main(["train", "--data", data, "--target", "y", "--model", HUB_MODEL, "--quant", "none",
                     "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith(f"error: Could not load model '{HUB_MODEL}': it is not on this machine and the Hugging "
                            "Face Hub cannot be reached (HF_HUB_OFFLINE is set). It needs a download of about 0.99 GB")
    run = Run(tmp_path / "run")
    status = run.status()
    assert status["state"] == "failed" and status["error"] in error
    assert status["error"] in state_message(run, status, has_metrics=False)


def test_a_gated_model_offline_says_it_is_gated():
    with pytest.raises(LiftError, match="It is gated: accept its licence"):
        models.load_tokenizer("meta-llama/Llama-3.2-1B")


@pytest.mark.slow  # a training subprocess: over 10 s
def test_a_hub_model_offline_started_from_the_app_fails_with_the_clear_message(tmp_path, monkeypatch):
    for name, value in ONE_THREAD_ENV.items():
        monkeypatch.setenv(name, value)
    data = write_table(two_gaussians(40), tmp_path / "table.csv")
    launcher = TrainingLauncher(tmp_path / "runs")
    run = launcher.start(TrainConfig(data=data, target="y", model=HUB_MODEL, quant="none"))
    status = wait_for(lambda: run.status(), lambda found: found.get("exit_code") is not None, timeout=120,
                      what="the run to fail")
    message = state_message(run, status, has_metrics=False)
    assert "failed" in message and "exit code 2" in message and "Traceback" not in message
    assert "the Hugging Face Hub cannot be reached" in message and "about 0.99 GB" in message


# ---------- the estimate against real trainings ----------

@pytest.mark.slow  # two training subprocesses of a few steps, SmolLM2's about 45 s
@pytest.mark.parametrize("model", ["tiny", "smollm2-135m"])
def test_the_estimate_is_within_30_percent_of_the_measured_peak_of_a_cpu_training(model, tmp_path):
    from bench.bench_memory import measure_training, write_table as bench_table

    if torch.cuda.is_available():
        pytest.skip("measures a CPU training's resident memory")
    result = measure_training(tmp_path, model, bench_table(tmp_path, "moons"), batch_size=4, steps=4)
    estimated, peak = result["estimate"].total, result["peak"]
    assert estimated == pytest.approx(peak, rel=0.3), f"estimate {estimated / 2**20:.0f} MiB, peak {peak / 2**20:.0f}"
