"""Turn table rows into LIFT prompts and completions, and parse generated answers back.

A row becomes a sentence ending in PROMPT_END and its answer becomes " <answer>" + ANSWER_END, the format of
Dinh et al. (2022). Custom templates are filled by a regex over the template text, never by str.format, so a
placeholder can only name a column: `{x.__class__}` is an unknown column, not an attribute lookup.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lift_core.errors import LiftError

TEMPLATE_KINDS = ("lift", "names", "sentence", "custom")
PROMPT_END = "###"
ANSWER_END = "@@@"
MAX_DECIMALS = 8

# "{{" and "}}" are escaped braces, "{...}" is a placeholder, any other brace is unbalanced.
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
# Plain decimal notation only: float() alone also takes "nan", "infinity", "1_000" and non-ASCII digits.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass
class PromptTemplate:
    features: list[str]
    target: str
    kind: str = "lift"
    decimals: int = 2
    text: str | None = None  # the custom template, with {column} placeholders
    trim_zeros: bool = False  # 5.10 -> 5.1, 3.00 -> 3: the same value in fewer tokens
    # The custom text split once into (literal text, False) and (column, True) pieces.
    _segments: list[tuple[str, bool]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        self.features = list(self.features)
        if self.kind not in TEMPLATE_KINDS:
            raise LiftError(f"Unknown template kind {self.kind!r}; choose one of {', '.join(TEMPLATE_KINDS)}")
        if (isinstance(self.decimals, bool) or not isinstance(self.decimals, numbers.Integral)
                or not 0 <= self.decimals <= MAX_DECIMALS):
            raise LiftError(f"The decimals must be a whole number from 0 to {MAX_DECIMALS}, got {self.decimals!r}.")
        self.decimals = int(self.decimals)
        self._segments = self._parse_custom_text() if self.kind == "custom" else []

    def _parse_custom_text(self) -> list[tuple[str, bool]]:
        if not isinstance(self.text, str) or not self.text.strip():
            raise LiftError("The custom template is empty: type a sentence with {column} placeholders for the "
                            "features, e.g. 'A flower with petal length {petal length} is a'.")
        columns = ", ".join(map(str, self.features))
        segments, position = [], 0
        for match in _TEMPLATE_TOKEN.finditer(self.text):
            segments.append((self.text[position:match.start()], False))
            position = match.end()
            token, column = match.group(), match.group(1)
            if token in ("{{", "}}"):
                segments.append((token[0], False))
            elif column is None:
                raise LiftError(f"The custom template has an unmatched {token!r} at character {match.start()}; "
                                "write {{ or }} for a literal brace.")
            elif column == self.target:
                raise LiftError(f"The custom template uses the target column {{{column}}}, which would put the "
                                "answer into the prompt; remove that placeholder.")
            elif column not in self.features:
                raise LiftError(f"The custom template names an unknown column {column!r}. Columns are: {columns}")
            else:
                segments.append((column, True))
        segments.append((self.text[position:], False))
        if not any(is_column for _, is_column in segments):
            raise LiftError("The custom template has no {column} placeholders, so every row would get the same "
                            f"prompt; add some of: {columns}")
        return segments

    def placeholders(self) -> list[str]:
        """Columns named in the custom text, in order of first use (empty for the built-in kinds)."""
        return list(dict.fromkeys(text for text, is_column in self._segments if is_column))

    def prompt(self, row: Mapping[str, object]) -> str:
        if self.kind == "custom":
            body = "".join(self._number(_cell(row, text)) if is_column else text
                           for text, is_column in self._segments)
            return body if body.endswith(PROMPT_END) else body + PROMPT_END
        values = [self._number(_cell(row, column)) for column in self.features]
        if self.kind == "lift":
            pairs = ", ".join(f"x{position}={value}" for position, value in enumerate(values, start=1))
            return f"When we have {pairs}, what should be the y value?{PROMPT_END}"
        if self.kind == "names":
            pairs = ", ".join(f"{column} is {value}" for column, value in zip(self.features, values))
            return f"Given that {pairs}, what is the {self.target}?{PROMPT_END}"
        facts = " ".join(f"The {column} is {value}." for column, value in zip(self.features, values))
        return f"{facts} What is the {self.target}?{PROMPT_END}"

    def completion(self, answer) -> str:
        if _is_missing(answer):
            raise LiftError(f"A row has no {self.target} value; rows without a target cannot be used for training.")
        if (isinstance(answer, numbers.Real) and not isinstance(answer, numbers.Integral)
                and not math.isfinite(answer)):
            raise LiftError(f"The {self.target} value {answer} is not a finite number; drop or fix that row.")
        text = self._number(answer)
        # The answer is read up to the first ANSWER_END, so text ending in "@" would be cut short.
        if ANSWER_END in text or text.endswith("@"):
            raise LiftError(f"The {self.target} value {text!r} contains {ANSWER_END!r} or ends in '@', which "
                            "cannot be told apart from the end-of-answer mark; rename that label.")
        return f" {text}{ANSWER_END}"

    def _number(self, value) -> str:
        return format_value(value, self.decimals, self.trim_zeros)

    def example(self, row: Mapping[str, object]) -> tuple[str, str]:
        return self.prompt(row), self.completion(_cell(row, self.target))


def parse_answer(generated: str) -> str:
    """The text before the first ANSWER_END (all of it if there is none), stripped."""
    return generated.split(ANSWER_END, 1)[0].strip()


def parse_class(generated: str, classes) -> str | None:
    """The class label the model generated, or None when it is not one of `classes`."""
    answer = parse_answer(generated)
    # Labels are compared stripped as well, so a padded label (" yes" from a "no, yes" CSV) is still found.
    return next((label for label in classes if label.strip() == answer), None)


def parse_number(generated: str) -> float | None:
    """The number the model generated, or None when it is not a finite number in plain decimal notation."""
    answer = parse_answer(generated)
    if not _NUMBER.fullmatch(answer):
        return None
    number = float(answer)
    return number if math.isfinite(number) else None


def _cell(row: Mapping[str, object], column: str):
    try:
        return row[column]
    except KeyError:
        raise LiftError(f"The row has no column {column!r}; give a value for every feature column.") from None


def _is_missing(value) -> bool:
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def format_value(value, decimals: int, trim_zeros: bool = False) -> str:
    """A cell as the prompt writes it: numbers rounded to `decimals` digits after the point, without trailing zeros
    when `trim_zeros` (reading the text back gives the rounded number either way), missing values as NA."""
    if _is_missing(value):
        return "NA"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        # Exact, unlike going through float, which overflows past 1e308 and rounds past 2**53.
        whole = str(int(value))
        return f"{whole}.{'0' * decimals}" if decimals and not trim_zeros else whole
    if isinstance(value, numbers.Real):
        text = f"{float(value):.{decimals}f}"
        if trim_zeros and "." in text:
            text = text.rstrip("0").rstrip(".")
        # "-0.00" and "0.00" are one value; a single spelling spares the model learning both.
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    return str(value)
