"""Rows as token ids: the training examples, their lengths, and the check, before training, that they fit."""

import functools

import numpy as np
import pandas as pd

from lift_core import models
from lift_core.errors import LiftError

# Tokens a tokenizer may add around an example's text (beginning and end of text, and the like).
SPECIAL_TOKENS_ALLOWANCE = 8
# How much of the longest row an error message quotes.
QUOTED_CHARACTERS = 120


def encode_examples(frame, template, tokenizer) -> list[dict]:
    """Token ids of prompt + answer, with the loss masked to the answer tokens.

    `decision_index` marks each example's decision token: the first answer token at which the answers in
    `frame` differ. The tokens before it (a space, say) and the terminator after it are learned in a few
    steps; the decision token's own loss is what tells whether the model is learning the task.
    """
    encoded, answers = [], []
    for row in frame.to_dict("records"):
        prompt_text, completion_text = template.example(row)
        prompt_ids = tokenizer(prompt_text)["input_ids"]
        answer_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
        answer_ids = answer_ids + [tokenizer.eos_token_id]
        answers.append(answer_ids)
        encoded.append({
            "input_ids": prompt_ids + answer_ids,
            "labels": [-100] * len(prompt_ids) + answer_ids,
        })
    offset = decision_offset(answers)
    for example, answer_ids in zip(encoded, answers):
        example["decision_index"] = len(example["input_ids"]) - len(answer_ids) + min(offset, len(answer_ids) - 1)
    return encoded


def decision_offset(answers: list[list[int]]) -> int:
    """How many leading tokens all answers share: the position, within an answer, of the decision token."""
    if not answers:
        return 0
    offset = 0
    while all(len(answer) > offset for answer in answers) and len({answer[offset] for answer in answers}) == 1:
        offset += 1
    return offset


def example_lengths(frame, template, model_name: str, trust_remote_code: bool = False) -> list[int]:
    """Tokens of each row's training example (prompt, answer and end-of-text), in the model's tokenizer."""
    try:
        tokenizer = cached_tokenizer(model_name, trust_remote_code)
    except LiftError:
        raise
    except Exception as error:  # a remote-code tokenizer can fail in ways of its own
        raise LiftError(f"Could not load the tokenizer of '{model_name}' to count tokens: {error}") from error
    return [len(example["input_ids"]) for example in encode_examples(frame, template, tokenizer)]


@functools.lru_cache(maxsize=4)
def cached_tokenizer(model_name: str, trust_remote_code: bool = False):
    # Loading takes a moment (a GGUF conversion the first time), and the Prompt and Train tabs ask again and
    # again for the same model; a few models at most, so a long-lived server does not fill its memory.
    return models.load_tokenizer(model_name, trust_remote_code)


def check_example_lengths(config, dataset, splits) -> None:
    """Refuse a table whose longest example is over the limit: the run's max_example_tokens, or the model's
    context length where that is shorter. Said before training, with the longest row and what to do, instead
    of minutes into a run or as an out-of-memory crash.
    """
    limit, source = config.max_example_tokens, "the longest-example setting"
    context = models.context_length(config.model, config.trust_remote_code)
    if context and context < limit:
        limit, source = context, f"the context length of {config.model}"
    template = config.template_for(dataset.features, dataset.target)
    frame = pd.concat([splits.train, splits.val, splits.test], ignore_index=True)
    texts = ["".join(template.example(row)) for row in frame.to_dict("records")]
    # A tokenizer makes at most one token per byte of UTF-8, so only the rows with more bytes than the limit
    # can be too long: a table of short rows is never tokenized here.
    suspects = [i for i, text in enumerate(texts) if len(text.encode()) + SPECIAL_TOKENS_ALLOWANCE > limit]
    if not suspects:
        return
    lengths = np.asarray(example_lengths(frame.iloc[suspects], template, config.model, config.trust_remote_code))
    if lengths.max() <= limit:
        return
    longest = texts[suspects[int(lengths.argmax())]]
    raise LiftError(
        f"{int((lengths > limit).sum())} of {len(frame)} rows make examples longer than {limit} tokens "
        f"({source}); the longest has {int(lengths.max())} tokens and begins "
        f"\"{longest[:QUOTED_CHARACTERS]}…\". Choose fewer feature columns, shorten the long text cells, or "
        "choose a template with fewer words; a higher longest-example setting allows longer rows, up to the model's "
        "context, at the cost of time and memory.")
