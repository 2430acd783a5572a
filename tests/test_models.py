"""Model resolution, the built-in tiny model, quantization choice and LoRA wrapping (no network, CPU only)."""

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import assert_resolved_again_unchanged

from lift_core import models
from lift_core.config import TrainConfig
from lift_core.errors import LiftError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_path(model_cache):
    return Path(models.resolve_model("tiny"))


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_path):
    return models.load_tokenizer("tiny")


# ---- the tiny alias -----------------------------------------------------------------------------------------

def test_tiny_builds_into_the_cache(tiny_path, model_cache):
    assert tiny_path.parent == Path(model_cache) == models.cache_dir()
    assert (tiny_path / "config.json").is_file()
    assert any(tiny_path.glob("*.safetensors"))
    assert (tiny_path / "tokenizer.json").is_file()
    config = json.loads((tiny_path / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    # No half-written build is left beside the finished one.
    assert not list(tiny_path.parent.glob(f"{tiny_path.name}.partial-*"))


def test_tiny_is_built_once(tiny_path):
    assert_resolved_again_unchanged("tiny", tiny_path)


def test_tiny_build_is_reproducible(tiny_path, tmp_path, monkeypatch):
    """A fresh cache (a new machine) must rebuild the same network, or saved adapters would stop matching it."""
    from safetensors.torch import load_file

    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path))
    rebuilt = Path(models.resolve_model("tiny"))
    assert rebuilt.parent == tmp_path and rebuilt != tiny_path
    original = load_file(next(tiny_path.glob("*.safetensors")))
    again = load_file(next(rebuilt.glob("*.safetensors")))
    assert original.keys() == again.keys()
    for name in original:
        assert torch.equal(original[name], again[name]), name
    vocab = json.loads((tiny_path / "tokenizer.json").read_text())["model"]["vocab"]
    assert json.loads((rebuilt / "tokenizer.json").read_text())["model"]["vocab"] == vocab


def test_tiny_is_labelled_not_pretrained_in_the_model_list():
    assert "NOT pretrained" in models.ALIASES["tiny"]
    assert "NOT pretrained" not in models.ALIASES["smollm2-135m"]
    assert list(models.LISTED_MODELS)[:2] == ["smollm2-135m", "tiny"]
    assert "NOT pretrained" in models.LISTED_MODELS["tiny"].description("tiny")


def test_tiny_tokenizer_splits_every_digit(tiny_tokenizer):
    text = "When we have x1=10.52, x2=-1234.09, what should be the y value?### 987@@@"
    tokens = tiny_tokenizer.tokenize(text)
    digit_tokens = [token for token in tokens if any(ch.isdigit() for ch in token)]
    assert digit_tokens and all(len(token) == 1 for token in digit_tokens), digit_tokens
    # Every digit of the text is its own token, in order.
    assert "".join(digit_tokens) == "".join(ch for ch in text if ch.isdigit())
    assert tiny_tokenizer.decode(tiny_tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_tiny_tokenizer_special_tokens(tiny_tokenizer):
    assert tiny_tokenizer.pad_token == "<pad>" and tiny_tokenizer.eos_token == "</s>"
    assert len({tiny_tokenizer.pad_token_id, tiny_tokenizer.eos_token_id, tiny_tokenizer.bos_token_id}) == 3
    # The answer end mark is a single token, so generation can stop on it cleanly.
    assert tiny_tokenizer.tokenize("@@@") == ["@@@"]


def test_load_tiny_full_precision():
    loaded = models.load_model("tiny", "none")
    assert loaded.quantization == "none"
    assert loaded.source == models.resolve_model("tiny")
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.model.config.vocab_size == len(loaded.tokenizer)
    assert loaded.tokenizer.pad_token_id is not None


# ---- resolving names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("hub_id", ["HuggingFaceTB/SmolLM2-360M-Instruct", "someone/some-model", "gpt2"])
def test_hub_ids_pass_through(hub_id, model_cache):
    before = sorted(os.listdir(model_cache))
    assert models.resolve_model(hub_id) == hub_id
    assert sorted(os.listdir(model_cache)) == before  # nothing downloaded or built


def test_local_folder_passes_through(tiny_path):
    assert models.resolve_model(str(tiny_path)) == str(tiny_path)


@pytest.mark.parametrize("name", ["/no/such/model-folder", "./no-such-model", "~/no-such-model"])
def test_missing_local_folder_is_a_lift_error(name):
    with pytest.raises(LiftError, match="does not exist"):
        models.resolve_model(name)


def test_missing_local_folder_fails_load_model():
    with pytest.raises(LiftError):
        models.load_model("/no/such/model-folder", "none")


def test_unavailable_hub_id_is_a_lift_error_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(LiftError, match="Could not load model 'nobody-lift-test/no-such-model'"):
        models.load_tokenizer("nobody-lift-test/no-such-model")


# ---- quantization -------------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only choice")
def test_auto_quantization_is_none_without_cuda():
    assert models.resolve_quantization("auto") == "none"
    assert models.compute_dtype() == torch.float32


@pytest.mark.parametrize("mode", ["4bit", "8bit", "none"])
def test_explicit_quantization_is_kept(mode):
    assert models.resolve_quantization(mode) == mode


@pytest.mark.parametrize("mode", ["4-bit", "int8", "", "NONE", "fp16"])
def test_bad_quantization_is_a_lift_error(mode):
    with pytest.raises(LiftError, match="Unknown quantization"):
        models.resolve_quantization(mode)


# ---- LoRA ---------------------------------------------------------------------------------------------------

def _linear_names(model) -> set[str]:
    return {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def test_all_linear_lora_targets_every_linear_layer_but_the_head():
    loaded = models.load_model("tiny", "none")
    linear = _linear_names(loaded.model)
    expected = {name for name in linear if not name.endswith("lm_head")}
    assert len(expected) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    peft_model = models.add_lora(loaded, TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0).lora_settings())
    wrapped = {name.removeprefix("base_model.model.") for name, module in peft_model.named_modules()
               if hasattr(module, "lora_A")}
    assert wrapped == expected
    assert "lm_head" not in wrapped
    # Only the adapters train.
    trainable = {name for name, param in peft_model.named_parameters() if param.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert len(trainable) == 2 * len(expected)
    lora_a = dict(peft_model.named_modules())["base_model.model.model.layers.0.self_attn.q_proj"].lora_A
    assert next(iter(lora_a.values())).weight.shape == (4, 64)


def test_lora_with_named_targets():
    loaded = models.load_model("tiny", "none")
    peft_model = models.add_lora(loaded, TrainConfig(lora_targets="q_proj,v_proj").lora_settings())
    wrapped = {name.rsplit(".", 1)[-1] for name, module in peft_model.named_modules() if hasattr(module, "lora_A")}
    assert wrapped == {"q_proj", "v_proj"}


def test_lora_with_unknown_targets_is_a_lift_error():
    loaded = models.load_model("tiny", "none")
    with pytest.raises(LiftError, match="target modules"):
        models.add_lora(loaded, TrainConfig(lora_targets="no_such_proj").lora_settings())


def test_lora_on_a_4bit_model():
    loaded = models.load_model("tiny", "4bit")
    assert loaded.quantization == "4bit"
    peft_model = models.add_lora(loaded, TrainConfig().lora_settings())
    wrapped = {name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")}
    assert len(wrapped) == 14
    assert all(not name.endswith("lm_head") for name in wrapped)


# ---- hardware -----------------------------------------------------------------------------------------------

def test_hardware_summary_names_the_device_torch_uses():
    summary = models.hardware_summary()
    if torch.cuda.is_available():
        assert summary.startswith("GPU: ") and torch.cuda.get_device_name(0) in summary
    else:
        assert summary.startswith("CPU only: ") and f"{os.cpu_count()} cores" in summary
    assert "GiB" in summary
