"""A run's predictions: its model loaded once per process, and a Predictor that turns table rows into prompts,
has the cached decoder answer them, and reads the answers back as prediction frames."""

import threading

import pandas as pd

from lift_core import answers, models, prompts
from lift_core.decoding import CachedDecoder, LabelTokens, Progress
from lift_core.errors import LiftError
from lift_core.runs import Run


class Predictor:
    """Prediction frames for a table's rows, from a model in eval mode that it never switches: whoever owns the
    model puts it in eval mode first (a model still in training mode is refused when asked to predict)."""

    def __init__(self, model, tokenizer, template: prompts.PromptTemplate, task: str,
                 classes: list[str] | None = None, fallback_value: float | None = None, batch_size: int = 64):
        self.decoder = CachedDecoder(model, tokenizer)
        self.template = template
        self.task = task
        self.classes = classes or []
        self.fallback_value = fallback_value
        self.batch_size = batch_size
        if task == "classification":
            self.labels = LabelTokens.build(tokenizer, [template.completion(c) for c in self.classes])

    @classmethod
    def for_run(cls, run: Run, model, tokenizer) -> "Predictor":
        config, info = run.config(), run.dataset_info()
        template = config.template_for(info.features, info.target)
        return cls(model, tokenizer, template, info.task, info.classes, info.train_target_mean)

    @classmethod
    def from_run(cls, run: Run, quant: str | None = None) -> "Predictor":
        return cls.for_run(run, *load_run_model(run, quant))

    @property
    def model(self):
        return self.decoder.model

    @property
    def tokenizer(self):
        return self.decoder.tokenizer

    def _encode(self, frame: pd.DataFrame) -> list[list[int]]:
        return [self.tokenizer(self.template.prompt(row))["input_ids"] for row in frame.to_dict("records")]

    def class_probabilities(self, frame: pd.DataFrame, *, progress: Progress | None = None):
        """Each row's class probabilities by label scoring, in `classes` order."""
        scores = self.decoder.label_scores(self._encode(frame), self.labels, self.batch_size, progress)
        return answers.probabilities(scores)

    def sample_answers(self, frame: pd.DataFrame, *, k: int = 1, temperature: float = 0.0,
                       progress: Progress | None = None) -> list[list[str]]:
        """k generated answers per row (greedy when temperature is 0), cut at the answer terminator, as in the
        paper. A row's k answers share its prompt's pass, so a batch holds batch_size // k prompts."""
        max_new_tokens = (self.labels.ids.shape[1] + 2 if self.task == "classification"
                          else 14 + self.template.decimals)
        return self.decoder.sample(self._encode(frame), k=k, temperature=temperature, max_new_tokens=max_new_tokens,
                                   stop=prompts.ANSWER_END, batch_size=max(1, self.batch_size // k),
                                   progress=progress)

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
                drawn = self.sample_answers(frame, k=samples, temperature=temperature, progress=progress)
                return answers.vote_frame(self.classes, drawn)
            return answers.scored_frame(self.classes, self.class_probabilities(frame, progress=progress))
        drawn = self.sample_answers(frame, k=samples or 5, temperature=temperature, progress=progress)
        return answers.regression_frame(drawn, self.fallback_value)


def load_run_model(run: Run, quant: str | None = None):
    """(model, tokenizer): the run's base model (quantized as in training unless told otherwise) with its adapter,
    in eval mode, which this loader owns the model to set."""
    from peft import PeftModel

    config = run.config()
    trained_with = run.status().get("quantization", config.quant)
    loaded = models.load_model(config.model, quant or trained_with, config.trust_remote_code)
    model = PeftModel.from_pretrained(loaded.model, run.adapter_dir)
    if loaded.quantization == "none":
        # Folded into the weights, the adapter costs nothing at inference (quantized weights cannot take it).
        model = model.merge_and_unload()
    return model.eval(), loaded.tokenizer


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
    features = run.dataset_info().features
    missing = [name for name in features if name not in table.columns]
    if missing:
        raise LiftError(f"The table lacks the feature column(s) {', '.join(missing)}, which run '{run.name}' "
                        f"was trained on. Columns found: {', '.join(map(str, table.columns))}.")
    predictor = Predictor.from_run(run, quant) if quant else cached_predictor(run)
    predicted = predictor.predict(table[features], samples=samples, temperature=temperature, progress=progress)
    kept = table.reset_index(drop=True).drop(columns=predicted.columns, errors="ignore")
    return pd.concat([kept, predicted], axis=1)
