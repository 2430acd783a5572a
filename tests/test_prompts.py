import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lift_core.errors import LiftError
from lift_core.prompts import (
    ANSWER_END,
    MAX_DECIMALS,
    PROMPT_END,
    PromptTemplate,
    format_value,
    parse_answer,
    parse_class,
    parse_number,
)

FEATURES = ["sepal length", "sepal width"]
ROW = {"sepal length": 5.1, "sepal width": 3.5, "species": "setosa"}


def template(kind="lift", **kwargs):
    return PromptTemplate(features=FEATURES, target="species", kind=kind, **kwargs)


# ---- exact prompts for every kind -------------------------------------------------------------------------

@pytest.mark.parametrize("kind, expected", [
    ("lift", "When we have x1=5.10, x2=3.50, what should be the y value?###"),
    ("names", "Given that sepal length is 5.10, sepal width is 3.50, what is the species?###"),
    ("sentence", "The sepal length is 5.10. The sepal width is 3.50. What is the species?###"),
])
def test_builtin_prompts(kind, expected):
    assert template(kind).prompt(ROW) == expected


def test_custom_prompt_fills_columns_and_literal_braces():
    text = "A {{flower}} with {sepal width} wide and {sepal length} long sepals, again {sepal width}: "
    expected = "A {flower} with 3.50 wide and 5.10 long sepals, again 3.50: ###"
    assert template("custom", text=text).prompt(ROW) == expected


def test_custom_prompt_keeps_an_existing_end_mark():
    assert template("custom", text="Length {sepal length}###").prompt(ROW) == "Length 5.10###"


def test_decimals_apply_to_every_number():
    assert template(decimals=0).prompt(ROW) == "When we have x1=5, x2=4, what should be the y value?###"
    assert template(decimals=3).prompt(ROW) == "When we have x1=5.100, x2=3.500, what should be the y value?###"


def test_pandas_row_with_unicode_column_names():
    row = pd.Series({"größe (cm)": 1.25, "名前": "ä b", "ziel": "x"})
    names = PromptTemplate(features=["größe (cm)", "名前"], target="ziel", kind="names")
    assert names.prompt(row) == "Given that größe (cm) is 1.25, 名前 is ä b, what is the ziel?###"
    custom = PromptTemplate(features=["größe (cm)", "名前"], target="ziel", kind="custom",
                            text="{名前}|{größe (cm)}")
    assert custom.prompt(row) == "ä b|1.25###"


@pytest.mark.parametrize("value, expected", [
    (3, "3.00"),
    (np.int64(-7), "-7.00"),
    (10**400, "1" + "0" * 400 + ".00"),
    (0.125, "0.12"),
    (np.float32(0.5), "0.50"),
    (-0.001, "0.00"),
    (float("inf"), "inf"),
    (True, "True"),
    (np.bool_(False), "False"),
    ("1", "1"),
    ("  padded text ", "  padded text "),
    (None, "NA"),
    (float("nan"), "NA"),
    (np.nan, "NA"),
    (pd.NA, "NA"),
])
def test_value_formatting(value, expected):
    one = PromptTemplate(features=["a"], target="y", kind="custom", text="{a}")
    assert one.prompt({"a": value}) == expected + PROMPT_END


@pytest.mark.parametrize("value, expected", [
    (3, "3"),
    (np.int64(-7), "-7"),
    (10**400, "1" + "0" * 400),
    (0.125, "0.12"),
    (np.float32(0.5), "0.5"),
    (-0.001, "0"),
    (100.0, "100"),
    (-2.30, "-2.3"),
    ("1.50", "1.50"),
])
def test_value_formatting_without_trailing_zeros(value, expected):
    one = PromptTemplate(features=["a"], target="y", kind="custom", text="{a}", trim_zeros=True)
    assert one.prompt({"a": value}) == expected + PROMPT_END


def test_trim_zeros_applies_to_prompts_and_answers():
    assert template(trim_zeros=True).example(ROW) == (
        "When we have x1=5.1, x2=3.5, what should be the y value?###", " setosa@@@")
    assert template(trim_zeros=True).completion(1.50) == " 1.5@@@"
    assert template(trim_zeros=True, decimals=3).prompt({**ROW, "sepal width": 3.4567}) == (
        "When we have x1=5.1, x2=3.457, what should be the y value?###")


@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12),
                 st.integers(min_value=-10**30, max_value=10**30)),
       st.integers(min_value=0, max_value=MAX_DECIMALS))
def test_trimmed_numbers_read_back_as_the_rounded_value(value, decimals):
    """Dropping trailing zeros loses nothing: the text reads back as the number rounded to `decimals` digits,
    exactly as the untrimmed text does, and it never ends in a zero after the point, nor in the point."""
    trimmed, kept = format_value(value, decimals, trim_zeros=True), format_value(value, decimals)
    assert float(trimmed) == float(kept)
    assert kept.startswith(trimmed) or trimmed == "0"
    assert not trimmed.endswith(".") and ("." not in trimmed or not trimmed.endswith("0"))
    assert parse_number(f" {trimmed}{ANSWER_END}") == float(kept)


def test_completions():
    assert template().completion("setosa") == " setosa@@@"
    assert template().completion(1.5) == " 1.50@@@"
    assert template(decimals=0).completion(np.float64(2.4)) == " 2@@@"
    assert template().completion(-0.004) == " 0.00@@@"


def test_example_pairs_prompt_and_completion():
    assert template("sentence").example(ROW) == (
        "The sepal length is 5.10. The sepal width is 3.50. What is the species?###", " setosa@@@")


def test_placeholders_in_order_of_first_use():
    text = "{sepal width} then {sepal length} then {sepal width} {{sepal length}}"
    assert template("custom", text=text).placeholders() == ["sepal width", "sepal length"]
    assert template("lift").placeholders() == []


def test_text_is_ignored_for_builtin_kinds():
    assert template("lift", text="{nope}").prompt(ROW) == template("lift").prompt(ROW)


# ---- errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("placeholder", ["x.__class__", "sepal length.__class__", "0", "a[0]",
                                         "sepal length!r", "sepal length:>10", "", " sepal length"])
def test_unknown_placeholder_lists_the_columns(placeholder):
    with pytest.raises(LiftError, match=r"unknown column .* Columns are: sepal length, sepal width$"):
        template("custom", text="value {" + placeholder + "}")


def test_target_placeholder_would_leak_the_answer():
    with pytest.raises(LiftError, match="target column"):
        template("custom", text="{sepal length} is a {species}")


@pytest.mark.parametrize("text", ["{sepal length} {", "} {sepal length}", "{{sepal length}", "{sepal {length}"])
def test_unmatched_brace(text):
    with pytest.raises(LiftError, match="unmatched"):
        template("custom", text=text)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "fancy"}, "Unknown template kind 'fancy'; choose one of lift, names, sentence, custom"),
    ({"kind": "custom"}, "template is empty"),
    ({"kind": "custom", "text": "  \n"}, "template is empty"),
    ({"kind": "custom", "text": "no columns {{here}}"}, "no {column} placeholders"),
    ({"decimals": -1}, "decimals"),
    ({"decimals": 9}, "decimals"),
    ({"decimals": 2.5}, "decimals"),
    ({"decimals": True}, "decimals"),
])
def test_invalid_template(kwargs, message):
    with pytest.raises(LiftError, match=re.escape(message)):
        PromptTemplate(features=FEATURES, target="species", **kwargs)


def test_numpy_integer_decimals_are_accepted():
    assert template(decimals=np.int64(1)).decimals == 1


def test_row_missing_a_feature():
    with pytest.raises(LiftError, match="no column 'sepal width'"):
        template().prompt({"sepal length": 1.0})


@pytest.mark.parametrize("answer, message", [
    (None, "no species value"),
    (float("nan"), "no species value"),
    (float("inf"), "not a finite number"),
    ("a@@@b", "rename that label"),
    ("mail@", "rename that label"),
])
def test_invalid_completion(answer, message):
    with pytest.raises(LiftError, match=message):
        template().completion(answer)


def test_example_without_target():
    with pytest.raises(LiftError, match="no column 'species'"):
        template().example({"sepal length": 1.0, "sepal width": 2.0})


# ---- parsing -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("generated, expected", [
    (" 1 @@@", "1"),
    ("  2.50@@@ junk", "2.50"),
    (" setosa@@@ versicolor@@@", "setosa"),
    (" no end mark ", "no end mark"),
    ("@@@", ""),
])
def test_parse_answer(generated, expected):
    assert parse_answer(generated) == expected


@pytest.mark.parametrize("generated, expected", [
    (" setosa@@@", "setosa"),
    ("setosa @@@ virginica", "setosa"),
    (" Setosa@@@", None),
    (" setos@@@", None),
    (" setosa virginica@@@", None),
    ("", None),
])
def test_parse_class(generated, expected):
    assert parse_class(generated, ["setosa", "virginica"]) == expected


def test_parse_class_finds_padded_labels():
    assert parse_class("  yes@@@", [" no", " yes"]) == " yes"


@pytest.mark.parametrize("generated, expected", [
    (" -3.20@@@", -3.2),
    (" 1 @@@", 1.0),
    ("  2.50@@@ junk", 2.5),
    ("+.5@@@", 0.5),
    ("7.@@@", 7.0),
    ("1e3@@@", 1000.0),
    ("abc@@@", None),
    ("nan@@@", None),
    ("inf@@@", None),
    ("-Infinity@@@", None),
    ("1e999@@@", None),
    ("1_000@@@", None),
    ("١٢@@@", None),
    ("1.2.3@@@", None),
    ("1,5@@@", None),
    ("@@@", None),
    ("", None),
])
def test_parse_number(generated, expected):
    assert parse_number(generated) == expected


# ---- properties --------------------------------------------------------------------------------------------

@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 8))
def test_number_round_trip(value, decimals):
    completion = template(decimals=decimals).completion(value)
    assert completion.startswith(" ") and completion.endswith(ANSWER_END)
    assert parse_number(completion) == pytest.approx(round(value, decimals), rel=1e-12, abs=1e-12)


labels = st.text(min_size=1).filter(
    lambda label: label == label.strip() and ANSWER_END not in label and not label.endswith("@"))


@given(labels, st.lists(labels, max_size=5))
def test_label_round_trip(label, others):
    classes = [other for other in others if other != label] + [label]
    assert parse_class(template().completion(label), classes) == label


# Custom texts built from pieces whose rendering is known, including ones str.format would execute.
VALUES = {"a": "<A>", "b c": "<B C>", "y": "SECRET"}
SAFE_PIECES = {"{a}": "<A>", "{b c}": "<B C>", "{{": "{", "}}": "}", " x.__class__ ": " x.__class__ ",
               "[0]": "[0]", "###": "###", "": ""}
# Each hostile piece is one balanced placeholder, so no neighbour can turn it into literal text.
HOSTILE_PIECES = ["{a.__class__}", "{a.__class__.__init__.__globals__}", "{a[0]}", "{0}", "{}", "{a!r}",
                  "{a:>10}", "{y}", "{ a}", "{b c.upper}"]


@given(st.lists(st.sampled_from([*SAFE_PIECES, *HOSTILE_PIECES]), min_size=1, max_size=8))
def test_custom_text_only_substitutes_columns(pieces):
    text = "".join(pieces)
    features = ["a", "b c"]
    if any(piece in HOSTILE_PIECES for piece in pieces) or not {"{a}", "{b c}"} & set(pieces):
        with pytest.raises(LiftError):
            PromptTemplate(features=features, target="y", kind="custom", text=text)
        return
    expected = "".join(SAFE_PIECES[piece] for piece in pieces)
    expected = expected if expected.endswith(PROMPT_END) else expected + PROMPT_END
    assert PromptTemplate(features=features, target="y", kind="custom", text=text).prompt(VALUES) == expected


@given(st.text(alphabet="{}ab c._[]0!:y#", max_size=30))
def test_random_custom_text_never_reaches_python_objects(text):
    features = ["a", "b c"]
    try:
        rendered = PromptTemplate(features=features, target="y", kind="custom", text=text).prompt(VALUES)
    except LiftError:
        return
    assert "SECRET" not in rendered and "<class" not in rendered and "method" not in rendered
    # Everything outside the substituted values comes from the text itself.
    stripped = rendered.replace("<A>", "").replace("<B C>", "")
    assert set(stripped) <= set(text) | set(PROMPT_END)
