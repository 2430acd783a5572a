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


@dataclass
class LabelTokens:
    """Each class's answer as token ids, padded into one block so all classes score in one pass."""

    ids: torch.Tensor    # (C, longest) answer tokens, right-padded
    mask: torch.Tensor   # (C, longest) 1 on real tokens

    @classmethod
    def build(cls, tokenizer, completions: list[str]) -> "LabelTokens":
        encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in completions]
        longest = max(map(len, encoded))
        pad = tokenizer.pad_token_id
        ids = torch.tensor([ids + [pad] * (longest - len(ids)) for ids in encoded])
        mask = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids in encoded])
        return cls(ids, mask)


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
                 classes: list[str] | None = None, fallback_value: float | None = None, batch_size: int = 32):
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
        config, info = TrainConfig.from_dict(run.config()), run.dataset_info()
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
        return cls.for_run(run, model, loaded.tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _left_padded(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # Left padding keeps every prompt's last token in the last column, where the answer starts.
        encoded = [self.tokenizer(text)["input_ids"] for text in texts]
        width = max(map(len, encoded))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=self.device)
        return ids, mask

    def _batches(self, frame: pd.DataFrame, batch_size: int, progress: Progress | None):
        rows = frame.to_dict("records")
        for start in range(0, len(rows), batch_size):
            yield [self.template.prompt(row) for row in rows[start:start + batch_size]]
            if progress:
                progress(min(start + batch_size, len(rows)), len(rows))

    @torch.no_grad()
    def _score_prompts(self, prompt_texts: list[str]) -> np.ndarray:
        """Log-likelihood of every class's answer after each prompt, shape (B, C).

        The prompt runs once; its key/value cache is then shared by all C answers, and logits are
        only computed where an answer token is scored.
        """
        ids, mask = self._left_padded(prompt_texts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         use_cache=True, logits_to_keep=1)
        first = out.logits[:, -1].float().log_softmax(-1)
        label_ids = self.labels.ids.to(self.device)
        label_mask = self.labels.mask.to(self.device)
        scores = first[:, label_ids[:, 0]]
        n_prompts, n_classes = scores.shape
        if label_ids.shape[1] == 1:
            return scores.cpu().numpy()
        cache = out.cache
        cache.batch_repeat_interleave(n_classes)
        inputs = label_ids[:, :-1].repeat(n_prompts, 1)
        targets = label_ids[:, 1:].repeat(n_prompts, 1)
        target_mask = label_mask[:, 1:].repeat(n_prompts, 1)
        steps = inputs.shape[1]
        follow_positions = positions[:, -1:].repeat_interleave(n_classes, 0) + 1 + torch.arange(
            steps, device=self.device)
        full_mask = torch.cat([mask.repeat_interleave(n_classes, 0), label_mask[:, :-1].repeat(n_prompts, 1)], 1)
        follow = self.model(input_ids=inputs, attention_mask=full_mask, position_ids=follow_positions,
                            cache=cache, use_cache=False)
        log_probs = follow.logits.float().log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        scores = scores + (log_probs * target_mask).sum(-1).view(n_prompts, n_classes)
        return scores.cpu().numpy()

    def class_probabilities(self, frame: pd.DataFrame, *, progress: Progress | None = None) -> np.ndarray:
        scores = [self._score_prompts(batch) for batch in self._batches(frame, self.batch_size, progress)]
        scores = np.concatenate(scores) if scores else np.zeros((0, len(self.classes)))
        scores = scores - scores.max(axis=1, keepdims=True)
        proba = np.exp(scores)
        return proba / proba.sum(axis=1, keepdims=True)

    @torch.no_grad()
    def sample_answers(self, frame: pd.DataFrame, *, k: int = 1, temperature: float = 0.0,
                       progress: Progress | None = None) -> list[list[str]]:
        """k generated answers per row (greedy when temperature is 0), cut at the answer terminator."""
        answers = []
        prompt_batch = max(1, self.batch_size // k)
        max_new_tokens = (self.labels.ids.shape[1] + 2 if self.task == "classification"
                          else 14 + self.template.decimals)
        for texts in self._batches(frame, prompt_batch, progress):
            ids, mask = self._left_padded(texts)
            # Plain temperature sampling, as in the paper: no top-k or nucleus truncation.
            sampling = ({"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
                        if temperature > 0 else {"do_sample": False})
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, num_return_sequences=k, max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id, stop_strings=[prompts.ANSWER_END],
                tokenizer=self.tokenizer, **sampling,
            )
            texts_out = self.tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
            answers.extend(texts_out[i:i + k] for i in range(0, len(texts_out), k))
        return answers

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
