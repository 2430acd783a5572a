"""A causal LM's answers to many prompts, decoded by hand over its key/value cache: label scores and samples.

It works on token ids and knows nothing of runs, tables or templates. Prompts are batched so that a batch shares a
long prefix, which runs once; its cache is copied to every prompt, and a prompt's cache to each of its answers.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Progress = Callable[[int, int], None]
# A shared prompt prefix shorter than this is not worth a pass of its own and a copy of its cache.
MIN_SHARED_PROMPT_TOKENS = 4


@dataclass
class LabelTokens:
    """Each class's answer as token ids, padded into one block so all classes score in one pass."""

    ids: torch.Tensor    # (C, longest) answer tokens, right-padded
    mask: torch.Tensor   # (C, longest) 1 on real tokens
    shared: int          # leading tokens every answer has in common (a space, say); at least one token is left

    @classmethod
    def build(cls, tokenizer, completions: list[str]) -> "LabelTokens":
        encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in completions]
        longest = max(map(len, encoded))
        pad = tokenizer.pad_token_id
        ids = torch.tensor([ids + [pad] * (longest - len(ids)) for ids in encoded])
        mask = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids in encoded])
        return cls(ids, mask, common_prefix_length(encoded))


def common_prefix_length(sequences: list[list[int]]) -> int:
    """How many leading tokens all sequences share, leaving every sequence at least one token of its own."""
    shortest = min(map(len, sequences))
    shared = 0
    while shared < shortest - 1 and len({sequence[shared] for sequence in sequences}) == 1:
        shared += 1
    return shared


def prefix_batches(encoded: list[list[int]], batch_size: int) -> list[list[int]]:
    """Indices of `encoded` in batches of at most `batch_size`, in token order, so that each batch's shared prefix
    (run once) is long: batches are cut where a prompt shares less with the one before than the longest prefix
    that still leaves batches half full on average. A grid's columns become batches of their own."""
    order = sorted(range(len(encoded)), key=encoded.__getitem__)
    shared = [common_prefix_length([encoded[a], encoded[b]]) for a, b in zip(order, order[1:])]
    half_full = min(batch_size, len(encoded)) / 2
    cut_below = next((level for level in sorted(set(shared), reverse=True)
                      if len(encoded) / (1 + sum(value < level for value in shared)) >= half_full), 0)
    batches = []
    for position, index in enumerate(order):
        if not batches or len(batches[-1]) == batch_size or shared[position - 1] < cut_below:
            batches.append([])
        batches[-1].append(index)
    return batches


class CachedDecoder:
    """Label scoring and sampling for one model and its tokenizer.

    The model's mode is its owner's business: the decoder never switches it, and refuses a model in training
    mode, whose dropout would make every answer noisy.
    """

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _require_eval_mode(self) -> None:
        if self.model.training:
            raise RuntimeError("The model is in training mode, where dropout makes every prediction noisy: call "
                               "model.eval() on it before predicting (predictions leave the model's mode to its "
                               "owner).")

    def _batches(self, encoded: list[list[int]], batch_size: int, progress: Progress | None):
        """Each batch's indices into `encoded`, with its prompts; `progress` hears after every batch."""
        done = 0
        for batch in prefix_batches(encoded, batch_size):
            yield batch, [encoded[index] for index in batch]
            done += len(batch)
            if progress:
                progress(done, len(encoded))

    def _pad_left(self, encoded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        # Left padding keeps every prompt's last token in the last column, where the answer starts.
        width = max(map(len, encoded))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=self.device)
        return ids, mask

    def _prompt_pass(self, encoded: list[list[int]]):
        """Run the prompts; returns their key/value cache, the last logits, the attention mask and last positions.

        Tokens every prompt starts with (a grid's column shares everything up to its second number) run once,
        and their cache is copied to every prompt; the results equal a plain padded pass.
        """
        shared = common_prefix_length(encoded) if len(encoded) > 1 else 0
        if shared < MIN_SHARED_PROMPT_TOKENS:
            ids, mask = self._pad_left(encoded)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             logits_to_keep=1)
            return out.cache, out.logits[:, -1], mask, positions[:, -1:]
        prefix = torch.tensor([encoded[0][:shared]], device=self.device)
        cache = self.model(input_ids=prefix, use_cache=True, logits_to_keep=1).cache
        cache.batch_repeat_interleave(len(encoded))
        # The padding sits between the shared prefix and each prompt's own tokens; the mask hides it.
        ids, own_mask = self._pad_left([tokens[shared:] for tokens in encoded])
        mask = torch.cat([torch.ones(len(encoded), shared, dtype=own_mask.dtype, device=self.device), own_mask], 1)
        positions = shared + (own_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                         logits_to_keep=1)
        return out.cache, out.logits[:, -1], mask, positions[:, -1:]

    def label_scores(self, encoded: list[list[int]], labels: LabelTokens, batch_size: int,
                     progress: Progress | None = None) -> np.ndarray:
        """Log-likelihood of every label after each prompt, up to a constant per prompt; shape (N, C)."""
        self._require_eval_mode()
        scores = np.zeros((len(encoded), len(labels.ids)))
        for batch, prompts in self._batches(encoded, batch_size, progress):
            scores[batch] = self._score_batch(prompts, labels)
        return scores

    @torch.no_grad()
    def _score_batch(self, encoded_prompts: list[list[int]], labels: LabelTokens) -> np.ndarray:
        """The answers' common first tokens (the same for every class, so the same constant for every class) run
        with the prompt; then the prompt's key/value cache is shared by the C answers' own tokens, and logits
        are only computed where an answer token is scored.
        """
        shared = labels.shared
        common_answer = labels.ids[0, :shared].tolist()
        encoded = [tokens + common_answer for tokens in encoded_prompts]
        cache, last_logits, mask, last_positions = self._prompt_pass(encoded)
        label_ids = labels.ids[:, shared:].to(self.device)
        label_mask = labels.mask[:, shared:].to(self.device)
        scores = last_logits.float().log_softmax(-1)[:, label_ids[:, 0]]
        n_prompts, n_classes = scores.shape
        if label_ids.shape[1] == 1:
            return scores.cpu().numpy()
        cache.batch_repeat_interleave(n_classes)
        inputs = label_ids[:, :-1].repeat(n_prompts, 1)
        targets = label_ids[:, 1:].repeat(n_prompts, 1)
        target_mask = label_mask[:, 1:].repeat(n_prompts, 1)
        steps = inputs.shape[1]
        follow_positions = last_positions.repeat_interleave(n_classes, 0) + 1 + torch.arange(steps, device=self.device)
        full_mask = torch.cat([mask.repeat_interleave(n_classes, 0), label_mask[:, :-1].repeat(n_prompts, 1)], 1)
        follow = self.model(input_ids=inputs, attention_mask=full_mask, position_ids=follow_positions,
                            cache=cache, use_cache=False)
        log_probs = follow.logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        scores = scores + (log_probs * target_mask).sum(-1).view(n_prompts, n_classes)
        return scores.cpu().numpy()

    @torch.no_grad()
    def sample(self, encoded: list[list[int]], *, k: int, temperature: float, max_new_tokens: int, stop: str,
               batch_size: int, progress: Progress | None = None) -> list[list[str]]:
        """k generated answers per prompt (greedy when temperature is 0), each ending once it contains `stop`.

        Plain temperature sampling: no top-k or nucleus truncation. Each prompt runs once (a shared prefix once
        per batch of `batch_size` prompts); its k answers continue from copies of its key/value cache.
        """
        self._require_eval_mode()
        answers = [None] * len(encoded)
        for batch, prompts in self._batches(encoded, batch_size, progress):
            cache, logits, mask, positions = self._prompt_pass(prompts)
            if k > 1:
                cache.batch_repeat_interleave(k)
                logits, mask, positions = (tensor.repeat_interleave(k, 0) for tensor in (logits, mask, positions))
            generated = self._continue(cache, logits, mask, positions, temperature, max_new_tokens, stop)
            decoded = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
            for position, index in enumerate(batch):
                answers[index] = decoded[position * k:(position + 1) * k]
        return answers

    def _continue(self, cache, logits, mask, positions, temperature: float, max_new_tokens: int,
                  stop: str) -> torch.Tensor:
        """Tokens drawn after each prompt until every answer contains `stop` (or ends the text); the tokens
        after an answer's end are padding."""
        pad, end = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        finished = torch.zeros(len(logits), dtype=torch.bool, device=self.device)
        tokens = []
        for _ in range(max_new_tokens):
            if temperature > 0:
                token = torch.multinomial((logits.float() / temperature).softmax(-1), 1).squeeze(1)
            else:
                token = logits.argmax(-1)
            token = torch.where(finished, torch.full_like(token, pad), token)
            tokens.append(token)
            texts = self.tokenizer.batch_decode(torch.stack(tokens, 1))
            finished |= (token == end) | torch.tensor([stop in text for text in texts], device=self.device)
            if finished.all():
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            positions = positions + 1
            logits = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=positions, cache=cache,
                                use_cache=True).logits[:, -1]
        return torch.stack(tokens, 1)
