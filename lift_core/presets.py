"""Named training settings for people who do not want to pick each one: TrainConfig field overrides."""

from dataclasses import dataclass

from lift_core.config import PREVIOUS_DEFAULTS, TrainConfig
from lift_core.errors import LiftError


@dataclass(frozen=True)
class Preset:
    description: str
    overrides: dict  # TrainConfig fields and their values; every other field keeps its default


PRESETS = {
    # No timings here: they depend on the model, the table and the machine, which the duration estimate knows.
    "Quick look": Preset(
        "80 steps instead of up to 300: a first, cheap answer to whether anything is learned.",
        {"max_steps": 80},
    ),
    "Recommended": Preset(
        "The defaults: min(20 epochs, 300 steps), lr 1e-3 with 6% warm-up; the best validation score is kept.",
        {},
    ),
    "Previous defaults": Preset(
        "The defaults before the CPU speed-ups: LoRA on every layer, numbers with trailing zeros, 6 evaluations "
        "per run and no stop at a perfect validation score; for comparing runs side by side.",
        PREVIOUS_DEFAULTS,
    ),
    "Paper": Preset(
        "The LIFT paper's GPT-J settings: 10 epochs, batch 4, lr 1e-4, LoRA r 16 / alpha 16 without dropout, "
        "a few warm-up steps, linear decay.",
        # Adapter dimension 16 "with no scaling" is alpha = r; 6 warm-up steps of the paper's runs ≈ 0.2%.
        {"epochs": 10.0, "max_steps": 0, "batch_size": 4, "lr": 1e-4, "lora_r": 16, "lora_alpha": 16,
         "lora_dropout": 0.0, "warmup": 0.002},
    ),
}
DEFAULT_PRESET = "Recommended"
# Every field some preset sets: choosing any preset sets all of them, so none keeps a value from the last one.
PRESET_FIELDS = tuple(dict.fromkeys(name for preset in PRESETS.values() for name in preset.overrides))


def apply_preset(name: str) -> dict:
    """The values of every PRESET_FIELDS field under the named preset, defaults filled in."""
    if name not in PRESETS:
        raise LiftError(f"Unknown preset '{name}'. Choose one of: {', '.join(PRESETS)}.")
    config = TrainConfig(**PRESETS[name].overrides)
    return {field: getattr(config, field) for field in PRESET_FIELDS}
