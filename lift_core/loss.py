"""The training loss: the causal LM loss over the answer tokens, as the model computes it, for less work (only the
answer columns reach the output layer; with LoRA on the top layers, the frozen lower layers run once per row)."""

import inspect

import torch

from lift_core import models
from lift_core.layer_cache import MATCH_TOLERANCE, LowerLayerCache


def answer_loss(model, batch: dict, keeps_logits: bool = True, lower_cache: LowerLayerCache | None = None):
    """The causal LM loss over the answer tokens, as the model computes it, and each row's decision-token loss.

    Returns (loss, decision losses or None, model outputs). Only the columns whose next token is scored go
    through the output layer (vocabulary x hidden, a fifth of a small model's work per token): the answers,
    a few tokens of each row. With `lower_cache`, and the batch's `row` numbers, the frozen lower layers' output
    comes from the cache and only the trained layers run.
    """
    inputs = dict(batch)
    labels = inputs.pop("labels")
    decision = inputs.pop("decision_index", None)
    row_numbers = inputs.pop("row", None)
    targets = labels[:, 1:]
    columns = (targets != -100).any(0).nonzero().squeeze(-1)
    selection = {"logits_to_keep": columns} if keeps_logits else {}
    if lower_cache is not None and row_numbers is not None:
        states = lower_cache.lower_states(row_numbers.tolist(), inputs.pop("input_ids"), inputs["attention_mask"])
        with lower_cache.top_layers_only():
            outputs = model(inputs_embeds=states, **inputs, **selection, use_cache=False)
    else:
        outputs = model(**inputs, **selection, use_cache=False)
    logits = (outputs.logits if keeps_logits else outputs.logits[:, columns]).float()
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets[:, columns].flatten(), ignore_index=-100)
    if decision is None:
        return loss, None, outputs
    with torch.no_grad():
        rows = torch.arange(len(decision), device=logits.device)
        at = torch.searchsorted(columns, decision - 1)
        decision_losses = torch.nn.functional.cross_entropy(logits[rows, at], labels[rows, decision],
                                                            reduction="none")
    return loss, decision_losses, outputs


def keeps_logits(model) -> bool:
    """Whether the model takes a tensor of columns to compute logits for, as transformers' own causal LMs do;
    remote code may take only a count, so it gets the full logits."""
    base = models.base_model(model)
    return (type(base).__module__.startswith("transformers.")
            and "logits_to_keep" in inspect.signature(base.forward).parameters)


def checked_lower_cache(model, top_layers: int, batch: dict) -> LowerLayerCache | None:
    """The cache of the frozen lower layers' output, once a batch's loss through it equals a full forward pass's.

    An architecture whose forward pass treats `inputs_embeds` unlike the embedding's output (some scale it) fails
    the check: the run then trains without the cache, with a line in its log, at the same loss.
    """
    cache = LowerLayerCache.for_model(model, top_layers)
    if cache is None:
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits_by_columns = keeps_logits(model)
            full = answer_loss(model, {k: v for k, v in batch.items() if k != "row"}, logits_by_columns)[0].item()
            cached = answer_loss(model, batch, logits_by_columns, cache)[0].item()
    finally:
        model.train(was_training)
    if abs(cached - full) > MATCH_TOLERANCE * max(1.0, abs(full)):
        print(f"The frozen lower layers are not cached: through the cache a batch's loss is {cached:.6f}, "
              f"not {full:.6f}; each step runs every layer instead.", flush=True)
        return None
    return cache
