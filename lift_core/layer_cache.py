"""Frozen lower layers run once per row.

With LoRA on the top layers only, every layer below them sees the same tokens with the same weights at every
step, so its output for a row never changes during a run. That output (the input of the first trained layer) is
computed the first time a row is seen and kept; every later step feeds it to the top layers as `inputs_embeds`
and runs, and backpropagates, through those layers alone. The loss and its gradients are those of a full
forward pass (checked once per run by `loss.checked_lower_cache`, and in the tests).
"""

from contextlib import contextmanager

import torch

from lift_core import models
from lift_core.memory import CACHE_BUDGET_BYTES

# The largest relative difference between the cached and the full pass's loss that counts as the same.
MATCH_TOLERANCE = 1e-4


class _LowerLayersDone(Exception):
    """Raised at the first trained layer: the forward pass has computed everything the cache needs."""


class LowerLayerCache:
    def __init__(self, model, first_trained: int):
        self.base = models.base_model(model)
        name, self.layers = models.decoder_layers(self.base)
        parent_name, _, self.attribute = name.rpartition(".")
        self.parent = self.base.get_submodule(parent_name)
        self.first_trained = first_trained
        self.states: dict[int, torch.Tensor] = {}
        self.cached_bytes = 0

    @classmethod
    def for_model(cls, model, top_layers: int) -> "LowerLayerCache | None":
        """A cache when LoRA trains only the top `top_layers` layers (0: all), else None: nothing is frozen below."""
        if top_layers <= 0:
            return None
        count = len(models.decoder_layers(models.base_model(model))[1])
        return cls(model, count - top_layers) if top_layers < count else None

    @torch.no_grad()
    def _run_lower_layers(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        captured = {}

        def capture(module, args, kwargs):
            captured["states"] = args[0] if args else kwargs["hidden_states"]
            raise _LowerLayersDone

        hook = self.layers[self.first_trained].register_forward_pre_hook(capture, with_kwargs=True)
        try:
            self.base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except _LowerLayersDone:
            pass
        finally:
            hook.remove()
        return captured["states"]

    def lower_states(self, rows: list[int], input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The first trained layer's input for a right-padded batch; rows not seen before run the lower layers once.

        Right padding never changes the states of the real tokens before it, so a row's states are the same in
        any batch and are kept without their padding.
        """
        lengths = attention_mask.sum(-1).tolist()
        missing = [i for i, row in enumerate(rows) if row not in self.states]
        fresh = {}
        if missing:
            computed = self._run_lower_layers(input_ids[missing], attention_mask[missing])
            for position, i in enumerate(missing):
                fresh[i] = computed[position, :lengths[i]]
        first = fresh[missing[0]] if missing else self.states[rows[0]]
        batch = first.new_zeros(len(rows), input_ids.shape[1], first.shape[-1])
        for i, row in enumerate(rows):
            states = fresh[i] if i in fresh else self.states[row]
            batch[i, :lengths[i]] = states
            if i in fresh and self.cached_bytes + states.nbytes <= CACHE_BUDGET_BYTES:
                self.states[row] = states.clone()
                self.cached_bytes += states.nbytes
        return batch

    @contextmanager
    def top_layers_only(self):
        """The model runs its trained layers only, for a forward pass fed with `lower_states`."""
        setattr(self.parent, self.attribute, torch.nn.ModuleList(list(self.layers)[self.first_trained:]))
        try:
            yield
        finally:
            setattr(self.parent, self.attribute, self.layers)
