"""Turn a finetuned model back into predictions: label scoring, sampling, and regression draws."""

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lift_core import models, prompts
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.runs import Run

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


def _normalized_entropy(shares: np.ndarray) -> np.ndarray:
    """Entropy of each row in [0, 1]: 0 when one class takes everything, 1 when all are equal."""
    n_classes = shares.shape[1]
    if n_classes < 2:
        return np.zeros(len(shares))
    safe = np.where(shares > 0, shares, 1.0)
    # + 0.0 turns the -0.0 of a certain row into a plain 0.
    return -(shares * np.log(safe)).sum(axis=1) / np.log(n_classes) + 0.0


class Predictor:
    def __init__(self, model, tokenizer, template: prompts.PromptTemplate, task: str,
                 classes: list[str] | None = None, fallback_value: float | None = None, batch_size: int = 64):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.task = task
        self.classes = classes or []
        self.fallback_value = fallback_value
        self.batch_size = batch_size
        if task == "classification":
            self.labels = LabelTokens.build(tokenizer, [template.completion(c) for c in self.classes])

    @classmethod
    def for_run(cls, run: Run, model, tokenizer) -> "Predictor":
        config, info = TrainConfig.of_run(run.config()), run.dataset_info()
        template = config.template_for(info["features"], info["target"])
        return cls(model, tokenizer, template, info["task"], info.get("classes"), info.get("train_target_mean"))

    @classmethod
    def from_run(cls, run: Run, quant: str | None = None) -> "Predictor":
        """Load the run's base model (quantized as in training unless told otherwise) and its adapter."""
        from peft import PeftModel

        config = run.config()
        trained_with = run.status().get("quantization", config.get("quant", "auto"))
        loaded = models.load_model(config["model"], quant or trained_with, config.get("trust_remote_code", False))
        model = PeftModel.from_pretrained(loaded.model, run.adapter_dir)
        if loaded.quantization == "none":
            # Folded into the weights, the adapter costs nothing at inference (quantized weights cannot take it).
            model = model.merge_and_unload()
        return cls.for_run(run, model, loaded.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _pad_left(self, encoded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        # Left padding keeps every prompt's last token in the last column, where the answer starts.
        width = max(map(len, encoded))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=self.device)
        return ids, mask

    def _batches(self, frame: pd.DataFrame, batch_size: int, progress: Progress | None):
        """(row indices, their prompts' token ids) per batch, grouped so that a batch shares a long prefix."""
        encoded = [self.tokenizer(self.template.prompt(row))["input_ids"] for row in frame.to_dict("records")]
        done = 0
        for batch in prefix_batches(encoded, batch_size):
            yield batch, [encoded[index] for index in batch]
            done += len(batch)
            if progress:
                progress(done, len(encoded))

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

    @torch.no_grad()
    def _score_prompts(self, encoded_prompts: list[list[int]]) -> np.ndarray:
        """Log-likelihood of every class's answer after each prompt, up to a constant per prompt; shape (B, C).

        The answers' common first tokens (the same for every class, so the same constant for every class) run
        with the prompt; then the prompt's key/value cache is shared by the C answers' own tokens, and logits
        are only computed where an answer token is scored.
        """
        shared = self.labels.shared
        common_answer = self.labels.ids[0, :shared].tolist()
        encoded = [tokens + common_answer for tokens in encoded_prompts]
        cache, last_logits, mask, last_positions = self._prompt_pass(encoded)
        label_ids = self.labels.ids[:, shared:].to(self.device)
        label_mask = self.labels.mask[:, shared:].to(self.device)
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

    def class_probabilities(self, frame: pd.DataFrame, *, progress: Progress | None = None) -> np.ndarray:
        scores = np.zeros((len(frame), len(self.classes)))
        for batch, encoded in self._batches(frame, self.batch_size, progress):
            scores[batch] = self._score_prompts(encoded)
        scores = scores - scores.max(axis=1, keepdims=True)
        proba = np.exp(scores)
        return proba / proba.sum(axis=1, keepdims=True)

    @torch.no_grad()
    def sample_answers(self, frame: pd.DataFrame, *, k: int = 1, temperature: float = 0.0,
                       progress: Progress | None = None) -> list[list[str]]:
        """k generated answers per row (greedy when temperature is 0), cut at the answer terminator.

        Plain temperature sampling, as in the paper: no top-k or nucleus truncation. Each prompt runs once (a
        shared prefix once per batch); its k answers continue from copies of its key/value cache.
        """
        prompt_batch = max(1, self.batch_size // k)
        max_new_tokens = (self.labels.ids.shape[1] + 2 if self.task == "classification"
                          else 14 + self.template.decimals)
        answers = [None] * len(frame)
        for batch, encoded in self._batches(frame, prompt_batch, progress):
            cache, logits, mask, positions = self._prompt_pass(encoded)
            if k > 1:
                cache.batch_repeat_interleave(k)
                logits, mask, positions = (tensor.repeat_interleave(k, 0) for tensor in (logits, mask, positions))
            generated = self._continue(cache, logits, mask, positions, temperature, max_new_tokens)
            decoded = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
            for position, index in enumerate(batch):
                answers[index] = decoded[position * k:(position + 1) * k]
        return answers

    def _continue(self, cache, logits, mask, positions, temperature: float, max_new_tokens: int) -> torch.Tensor:
        """Tokens drawn after each prompt until every answer has its terminator (or end of text); the tokens
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
            finished |= (token == end) | torch.tensor([prompts.ANSWER_END in text for text in texts],
                                                      device=self.device)
            if finished.all():
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            positions = positions + 1
            logits = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=positions, cache=cache,
                                use_cache=True).logits[:, -1]
        return torch.stack(tokens, 1)

    def predict(self, frame: pd.DataFrame, *, samples: int = 0, temperature: float = 1.0,
                progress: Progress | None = None) -> pd.DataFrame:
        """One row per input row.

        Classification: y_pred, p_<class> for every class, spread (normalized entropy), invalid (0/1 share).
        With samples=0 the probabilities come from label scoring; else they are the vote shares of
        `samples` generations at `temperature`.
        Regression: y_pred (mean of valid samples), median, std, invalid (share of unparsable samples).
        """
        if self.task == "classification":
            if samples:
                return self._vote(frame, samples, temperature, progress)
            proba = self.class_probabilities(frame, progress=progress)
            return self._class_frame(proba, np.zeros(len(frame)), np.asarray(self.classes)[proba.argmax(axis=1)])
        return self._regress(frame, samples or 5, temperature, progress)

    def _class_frame(self, shares: np.ndarray, invalid: np.ndarray, y_pred) -> pd.DataFrame:
        result = pd.DataFrame({"y_pred": list(y_pred)})
        for index, label in enumerate(self.classes):
            result[f"p_{label}"] = shares[:, index]
        result["spread"] = _normalized_entropy(shares)
        result["invalid"] = invalid
        return result

    def _vote(self, frame, samples, temperature, progress) -> pd.DataFrame:
        answers = self.sample_answers(frame, k=samples, temperature=temperature, progress=progress)
        index = {label: i for i, label in enumerate(self.classes)}
        shares = np.zeros((len(answers), len(self.classes)))
        invalid = np.zeros(len(answers))
        y_pred = []
        for row, texts in enumerate(answers):
            votes = Counter(prompts.parse_class(text, self.classes) for text in texts)
            invalid[row] = votes.pop(None, 0) / len(texts)
            for label, count in votes.items():
                shares[row, index[label]] = count / len(texts)
            y_pred.append(votes.most_common(1)[0][0] if votes else None)
        # Rows where every sample was invalid have no votes: their spread is the maximum.
        spread_shares = np.where(shares.sum(1, keepdims=True) > 0, shares, 1.0 / max(1, len(self.classes)))
        result = self._class_frame(shares, invalid, y_pred)
        result["spread"] = _normalized_entropy(spread_shares / spread_shares.sum(1, keepdims=True))
        return result

    def _regress(self, frame, samples, temperature, progress) -> pd.DataFrame:
        answers = self.sample_answers(frame, k=samples, temperature=temperature, progress=progress)
        rows = []
        for texts in answers:
            values = [v for v in (prompts.parse_number(text) for text in texts) if v is not None]
            invalid = 1 - len(values) / len(texts)
            if not values:
                # As in the paper: a row with no usable sample gets the training mean.
                values = [self.fallback_value if self.fallback_value is not None else 0.0]
            rows.append({"y_pred": float(np.mean(values)), "median": float(np.median(values)),
                         "std": float(np.std(values)), "invalid": invalid})
        return pd.DataFrame(rows, columns=["y_pred", "median", "std", "invalid"])


_loaded: dict[tuple, Predictor] = {}
_loading = threading.Lock()


def cached_predictor(run: Run) -> Predictor:
    """The run's predictor, loaded once per process and kept while the same adapter is asked for.

    One model at a time: a long-lived server holding every run's model would run out of memory.
    """
    key = (str(run.adapter_dir.resolve()), run.adapter_dir.stat().st_mtime if run.adapter_dir.exists() else 0)
    with _loading:
        if key not in _loaded:
            _loaded.clear()
            _loaded[key] = Predictor.from_run(run)
        return _loaded[key]


def predict_table(run: Run, table: pd.DataFrame, *, quant: str | None = None, samples: int = 0,
                  temperature: float = 1.0, progress: Progress | None = None) -> pd.DataFrame:
    """`table` with the run's predictions appended. Columns other than the run's features are kept, and
    prediction columns the table already has (a re-uploaded predictions file) are replaced by the new ones.

    The model is loaded (quantized as `quant`, else as trained) only once the table is known to fit the run.
    """
    features = run.dataset_info()["features"]
    missing = [name for name in features if name not in table.columns]
    if missing:
        raise LiftError(f"The table lacks the feature column(s) {', '.join(missing)}, which run '{run.name}' "
                        f"was trained on. Columns found: {', '.join(map(str, table.columns))}.")
    predictor = Predictor.from_run(run, quant) if quant else cached_predictor(run)
    predicted = predictor.predict(table[features], samples=samples, temperature=temperature, progress=progress)
    kept = table.reset_index(drop=True).drop(columns=predicted.columns, errors="ignore")
    return pd.concat([kept, predicted], axis=1)
