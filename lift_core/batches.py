"""The training batches: the order the rows come in (StratifiedSampler, over balance_groups) and how a batch of
encoded rows becomes padded tensors (PadCollator)."""

import numpy as np
import torch


class PadCollator:
    """Pads a batch only to its own longest row, less work than one width for all; the padding is kept out of the
    attention and the loss."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        width = max(len(example["input_ids"]) for example in examples)
        batch = {"input_ids": [], "labels": [], "attention_mask": []}
        for example in examples:
            padding = width - len(example["input_ids"])
            batch["input_ids"].append(example["input_ids"] + [self.pad_token_id] * padding)
            batch["labels"].append(example["labels"] + [-100] * padding)
            batch["attention_mask"].append([1] * len(example["input_ids"]) + [0] * padding)
        tensors = {key: torch.tensor(value) for key, value in batch.items()}
        for key in ("decision_index", "row"):
            if all(key in example for example in examples):
                tensors[key] = torch.tensor([example[key] for example in examples])
        return tensors


class StratifiedSampler(torch.utils.data.Sampler):
    """Each epoch a new shuffle in which every class (or target quintile) is spread evenly through the order.

    Every batch then carries the classes in about their overall shares, instead of the runs of one class a
    plain shuffle deals out on small tables, and each epoch differs, seeded by `seed` and the epoch number.
    """

    def __init__(self, groups, seed: int):
        self.groups = np.asarray(groups)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        position = np.empty(len(self.groups))
        for group in np.unique(self.groups):
            members = np.flatnonzero(self.groups == group)
            # Members of a group sit at evenly spaced points of [0, 1), each jittered within its own slot.
            position[rng.permutation(members)] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
        return iter(np.argsort(position, kind="stable").tolist())


def balance_groups(frame, target: str, task: str) -> np.ndarray:
    """The groups StratifiedSampler spreads out: the class, or for regression the target's quintile."""
    values = frame[target]
    if task == "classification":
        return values.astype(str).to_numpy()
    ranks = values.rank(method="first").to_numpy()
    return np.floor((ranks - 1) * 5 / max(1, len(values))).astype(int)
