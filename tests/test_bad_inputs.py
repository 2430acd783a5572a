"""A corpus of bad inputs, given to the command line and to the web app's API.

The contract for every case: the input is refused with a clear message (the CLI prints one `error: ...` line to
stderr and exits 2, with no traceback; the app shows "⚠️ ..." in its message component, or gradio's own input check
answers with its message) or, where the input is legitimately usable, it is accepted. Never a crash (the CLI's exit
1, an exception out of an app handler), and never a run folder that looks complete (an `adapter/` or the state
`completed`).

No case trains for real. `train` runs in-process with the run-folder step replaced by a probe (see
`reached_training`): an input that gets that far passed every check made before a run folder exists, and the probe
then also writes every row as its prompt and answer, so an accepted input could not fail later on its data. The app
cases use upload, select, preview_prompts, token_stats and estimate, and start only for inputs it must refuse.

In the case tables, `expect` says what each input must give, and `note` why an accepted input is acceptable:
    REFUSED   a clear message and nothing written
    ACCEPTED  usable input, loaded (and for the CLI, every row turned into a prompt)
    EITHER    (CLI) usable data that may still be too long for the model: accepted, or REFUSED saying so
    USAGE     the CLI's argument parser refuses it: its usage line plus one `error:` line, exit 2
    WARNED    (app) the table loads, and the message says why the default selection cannot train
    GRADIO    (app) gradio's own input check refuses it before the handler: an error with that message
"""

import bz2
import gzip
import io
import json
import os
import signal
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from helpers import lift_cli, new_client

from lift_core import data
from lift_core.config import TrainConfig
from lift_core.errors import LiftError
from lift_core.presets import PRESET_FIELDS
from lift_core.prompts import TEMPLATE_KINDS

REFUSED, ACCEPTED, EITHER, USAGE, WARNED, GRADIO = "refused", "accepted", "either", "usage", "warned", "gradio"
TINY = ("--model", "tiny", "--quant", "none")


# ---- the files -------------------------------------------------------------------------------------------------

def good_frame(n=30) -> pd.DataFrame:
    """x1 (float), x2 (int), y (classes p, q): a table every check passes."""
    return pd.DataFrame({"x1": np.round(np.linspace(-2, 2, n), 3), "x2": np.arange(n) % 7,
                         "y": np.where(np.arange(n) % 2 == 0, "p", "q")})


GOOD_CSV = good_frame().to_csv(index=False)


def rows_csv(header: str) -> str:
    """`header` over the good table's rows: three columns, the last one p/q."""
    return header + "\n" + GOOD_CSV.split("\n", 1)[1]


def png_bytes() -> bytes:
    """A valid 1x1 PNG image."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("table.csv", GOOD_CSV)
    return buffer.getvalue()


PDF = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
       b"trailer\n<< /Root 1 0 R >>\n%%EOF\n")


def frame_file(name, make_frame):
    """A builder: FOLDER/name holding make_frame() as a CSV file."""
    def build(folder: Path) -> Path:
        make_frame().to_csv(folder / name, index=False)
        return folder / name
    return build


def raw_file(name, content):
    """A builder: FOLDER/name holding `content` (bytes or text, or a function that makes them)."""
    def build(folder: Path) -> Path:
        path = folder / name
        body = content() if callable(content) else content
        path.write_bytes(body.encode() if isinstance(body, str) else body)
        return path
    return build


def jsonl(records) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def settings_file(name, settings):
    """A `train --config` file; "@good" in it stands for the path of the good table, written beside it."""
    def build(folder: Path) -> Path:
        good = FILES["good"](folder)
        text = settings if isinstance(settings, str) else json.dumps(settings)
        path = folder / name
        path.write_text(text.replace("@good", str(good)))
        return path
    return build


def make_folder(folder: Path) -> Path:
    path = folder / "folder.csv"
    path.mkdir()
    return path


def wide_frame(n_columns: int) -> pd.DataFrame:
    return pd.DataFrame({**{f"c{i}": np.arange(20) * (i % 5) for i in range(n_columns)}, "y": np.arange(20) % 2})


def with_column(frame: pd.DataFrame, **columns) -> pd.DataFrame:
    return frame.assign(**columns)


N = 30
FILES = {
    "good": raw_file("good.csv", GOOD_CSV),
    "png": raw_file("picture.png", png_bytes),
    "png_as_csv": raw_file("picture.csv", png_bytes),
    "zip": raw_file("table.zip", zip_bytes),
    "zip_as_csv": raw_file("zipped.csv", zip_bytes),
    "pdf_as_csv": raw_file("report.csv", PDF),
    "garbage": raw_file("garbage.csv", lambda: b"\x00" + np.random.default_rng(0).bytes(4095)),
    "empty": raw_file("empty.csv", b""),
    "blank_lines": raw_file("blank.csv", "\n\n   \n"),
    "header_only": raw_file("header.csv", "x1,x2,y\n"),
    "utf16": raw_file("utf16.csv", lambda: GOOD_CSV.encode("utf-16")),
    "latin1": raw_file("latin1.csv", lambda: rows_csv("température,x2,y").encode("latin-1")),
    "utf8_bom": raw_file("bom.csv", lambda: b"\xef\xbb\xbf" + GOOD_CSV.encode()),
    "gzip_as_csv": raw_file("packed.csv", lambda: gzip.compress(GOOD_CSV.encode())),
    "csv_gz": raw_file("packed.csv.gz", lambda: gzip.compress(GOOD_CSV.encode())),
    "bz2_as_csv": raw_file("squeezed.csv", lambda: bz2.compress(GOOD_CSV.encode())),
    "semicolons": raw_file("semicolons.csv", GOOD_CSV.replace(",", ";")),
    "pipes": raw_file("pipes.csv", GOOD_CSV.replace(",", "|")),
    "tabs_in_csv": raw_file("tabs.csv", GOOD_CSV.replace(",", "\t")),
    "commas_in_tsv": raw_file("commas.tsv", GOOD_CSV),
    "duplicate_names": raw_file("duplicates.csv", rows_csv("x1,x1,y")),
    "blank_name": raw_file("blank-name.csv", rows_csv(",x2,y")),
    "numeric_header": raw_file("numbers.csv", "1,2,3\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(N))),
    "numeric_names": raw_file("numeric-names.csv", rows_csv("1,2.5,y")),
    "odd_header": raw_file("odd-header.csv", rows_csv('"income, net"," spaced ""quoted""",-y')),
    "unicode_names": raw_file("unicode.csv", rows_csv("🌡️ température,名前 (ja),y")),
    "long_names": raw_file("long.csv", rows_csv("a" * 5000 + "," + "b" * 3000 + ",y")),
    "nested_jsonl": raw_file("nested.jsonl", jsonl(
        {"a": {"x": i, "tags": ["t", i]}, "b": [i, i + 1], "y": "pq"[i % 2]} for i in range(N))),
    "nested_target_jsonl": raw_file("nested-target.jsonl", jsonl(
        {"a": i, "y": {"kind": "pq"[i % 2]}} for i in range(N))),
    "malformed_jsonl": raw_file("broken.jsonl", '{"x1": 1, "y": "p"}\n{"x1": 2, "y": \n'),
    "json_array_jsonl": raw_file("array.jsonl", json.dumps([{"x1": i, "y": "pq"[i % 2]} for i in range(N)])),
    "bare_values_jsonl": raw_file("values.jsonl", "1\n2\n3\n"),
    "huge_cell": frame_file("huge.csv", lambda: with_column(
        good_frame(), note=["x" * 5_000_000] + ["short"] * (N - 1))),
    "wide": frame_file("wide.csv", lambda: wide_frame(3000)),
    "wide_500": frame_file("wide-500.csv", lambda: wide_frame(500)),
    "single_row": raw_file("one-row.csv", "x1,x2,y\n1.5,2,p\n"),
    "one_class": frame_file("one-class.csv", lambda: with_column(good_frame(), y="p")),
    "all_missing_target": frame_file("no-target.csv", lambda: with_column(good_frame(), y=np.nan)),
    "nan_inf_values": raw_file("nan-inf.csv", "x1,x2,y\n" + "".join(
        f"{value},{i},{'pq'[i % 2]}\n" for i, value in enumerate(["nan", "inf", "-inf", "NaN", "1e999", "", "2"] * 5))),
    "inf_regression_target": raw_file("inf-target.csv", "x1,y\n" + "".join(
        f"{i},{value}\n" for i, value in enumerate(["1.5", "inf", "2.25", "-0.5"] * 8))),
    "mixed_types": raw_file("mixed.csv", "x1,y\n" + "".join(
        f"{value},{'pq'[i % 2]}\n" for i, value in enumerate(["1", "x", "2.5", "True", "", "2020-01-01"] * 5))),
    "mixed_target": raw_file("mixed-target.csv", "x1,y\n" + "".join(
        f"{i},{value}\n" for i, value in enumerate(["1", "x", "2.5", "True"] * 8))),
    "many_classes": frame_file("many-classes.csv", lambda: pd.DataFrame(
        {"x1": np.arange(300), "y": [f"class {i}" for i in range(300)]})),
    "many_integer_labels": frame_file("many-integers.csv", lambda: pd.DataFrame(
        {"x1": np.arange(300) % 17, "y": np.arange(300)})),
    "answer_mark_label": frame_file("at-label.csv", lambda: with_column(good_frame(), y=["p@", "q"] * (N // 2))),
    "ragged": raw_file("ragged.csv", "x1,x2,y\n1,2,p\n3,4,q,9\n"),
    "csv_named_xlsx": raw_file("table.xlsx", GOOD_CSV),
    "garbage_parquet": raw_file("table.parquet", lambda: np.random.default_rng(1).bytes(2000)),
    "directory": make_folder,
    "missing": lambda folder: folder / "no-such-table.csv",
    "regression": frame_file("regression.csv", lambda: pd.DataFrame(
        {"x1": np.linspace(0, 1, N), "y": np.linspace(0, 1, N) * 3 + 0.5})),
    "unseen_classes_test": frame_file("test-unseen.csv", lambda: with_column(
        good_frame(12), y=["p", "q", "r", "s"] * 3)),
    "test_lacks_column": frame_file("test-lacks.csv", lambda: good_frame(12).drop(columns="x2")),
    "test_without_targets": frame_file("test-no-y.csv", lambda: with_column(good_frame(12), y=np.nan)),
    "text_regression_test": frame_file("test-text.csv", lambda: pd.DataFrame(
        {"x1": np.linspace(0, 1, 12), "y": ["high", "low"] * 6})),
    "lacks_x2": frame_file("lacks-x2.csv", lambda: good_frame(5).drop(columns="x2")),
    "settings_list": settings_file("settings-list.json", "[1, 2]"),
    "settings_not_json": settings_file("settings-text.json", "data = good.csv"),
    "settings_text_number": settings_file("settings-four.json", {
        "data": "@good", "target": "y", "model": "tiny", "quant": "none", "batch_size": "four"}),
    "settings_null_epochs": settings_file("settings-null.json", {
        "data": "@good", "target": "y", "model": "tiny", "quant": "none", "epochs": None}),
    "settings_without_data": settings_file("settings-no-data.json", {"target": "y", "model": "tiny"}),
    "settings_numeric_data": settings_file("settings-number.json", {
        "data": 5, "target": "y", "model": "tiny", "quant": "none"}),
}


def build(name: str, folder: Path) -> Path:
    sub = folder / f"in-{name}"  # a folder per file: several files of one case never share a name
    sub.mkdir(exist_ok=True)
    return FILES[name](sub)


# ---- what no case may leave behind -----------------------------------------------------------------------------

def complete_runs(root: Path) -> list[Path]:
    """Folders under `root` that look like a finished run: an adapter, or the state `completed`."""
    folders = {path.parent for path in root.rglob("status.json")} | {path.parent for path in root.rglob("adapter")}
    return sorted(folder for folder in folders if (folder / "adapter").is_dir()
                  or (data_json(folder / "status.json") or {}).get("state") == "completed")


def data_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---- the command line ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CliCase:
    id: str
    argv: tuple  # "@name" is the path of FILES[name]; "{out}", "{tmp}" and "{fake_run}" are filled in
    expect: str
    says: str = ""  # a part of the message
    note: str = ""  # why an accepted input is acceptable
    slow: bool = False


def train(table="good", *extra, target="y"):
    """`train` of FILES[table] with the tiny model; target None: the extra arguments name it."""
    targets = ("--target", target) if target is not None else ()
    return ("train", "--data", f"@{table}", *targets, *TINY, *extra, "--out", "{out}")


def predict(table):
    return ("predict", "--run", "{fake_run}", "--data", f"@{table}", "--out", "{out}")


def baselines(table, *extra):
    return ("baselines", "--data", f"@{table}", "--target", "y", "--only", "majority", *extra)


def settings_file_train(name):
    return ("train", "--config", f"@{name}", "--out", "{out}")


CLI_CASES = [
    # wrong kinds of file
    CliCase("png", train("png"), REFUSED, "Unsupported file type '.png'"),
    CliCase("png-named-csv", train("png_as_csv"), REFUSED, "looks like a PNG image"),
    CliCase("zip", train("zip"), REFUSED, "Unsupported file type '.zip'"),
    CliCase("zip-named-csv", train("zip_as_csv"), REFUSED, "looks like a zip archive"),
    CliCase("pdf-named-csv", train("pdf_as_csv"), REFUSED, "looks like a PDF document"),
    CliCase("binary-garbage", train("garbage"), REFUSED, "contains binary data"),
    CliCase("xlsx-holding-csv-text", train("csv_named_xlsx"), REFUSED, "could not be read as an Excel table"),
    CliCase("parquet-garbage", train("garbage_parquet"), REFUSED, "could not be read as a Parquet table"),
    # empty tables
    CliCase("empty-file", train("empty"), REFUSED, "is empty"),
    CliCase("blank-lines", train("blank_lines"), REFUSED, "is empty"),
    CliCase("header-only", train("header_only"), REFUSED, "no data rows"),
    # encodings
    CliCase("utf16-with-bom", train("utf16"), REFUSED, "UTF-16"),
    CliCase("latin1", train("latin1"), REFUSED, "not UTF-8 text"),
    CliCase("utf8-bom", train("utf8_bom"), ACCEPTED, note="UTF-8 with a byte order mark is UTF-8"),
    # compression
    CliCase("gzip-named-csv", train("gzip_as_csv"), REFUSED, "gzip-compressed"),
    CliCase("csv-gz", train("csv_gz"), REFUSED, "Unsupported file type '.gz'"),
    CliCase("bz2-named-csv", train("bz2_as_csv"), REFUSED, "bzip2-compressed"),
    # separators
    CliCase("semicolons-in-csv", train("semicolons"), REFUSED, "separated by semicolons"),
    CliCase("pipes-in-csv", train("pipes"), REFUSED, "separated by pipes"),
    CliCase("tabs-in-csv", train("tabs_in_csv"), REFUSED, "Rename it to .tsv"),
    CliCase("commas-in-tsv", train("commas_in_tsv"), REFUSED, "Rename it to .csv"),
    CliCase("ragged-rows", train("ragged"), REFUSED, "same number of fields"),
    # column names
    CliCase("duplicate-names", train("duplicate_names"), REFUSED, "'x1' appears more than once"),
    CliCase("blank-name", train("blank_name"), ACCEPTED, note="a blank header cell is named 'Unnamed: 0'"),
    CliCase("numeric-header", train("numeric_header", target="3"), REFUSED, "looks like data, not column names"),
    CliCase("some-numeric-names", train("numeric_names"), ACCEPTED, note="names that are numbers are still names"),
    CliCase("target-dash-y-as-its-own-argument", train("odd_header", target="-y"), USAGE,
            "argument --target: expected one argument", note="argparse reads '-y' as an option; see the next case"),
    CliCase("target-named-dash-y", train("odd_header", "--target=-y", target=None), ACCEPTED,
            note="'--target=-y' names a column that starts with a dash; the features are 'income, net' and "
                 "' spaced \"quoted\"'"),
    CliCase("feature-with-a-comma", train("odd_header", "--target=-y", "--features", "income, net", target=None),
            REFUSED, "Column 'income' is not in the table",
            note="--features is a comma-separated list; such a column is given through --config"),
    CliCase("unicode-names", train("unicode_names"), ACCEPTED, note="any text is a column name"),
    CliCase("very-long-names", train("long_names"), ACCEPTED, note="long names make long prompts, nothing worse"),
    # JSON lines
    CliCase("nested-jsonl", train("nested_jsonl"), ACCEPTED, note="nested values become their JSON text"),
    CliCase("nested-target-jsonl", train("nested_target_jsonl"), ACCEPTED, note="each JSON object is a class"),
    CliCase("malformed-jsonl", train("malformed_jsonl"), REFUSED, "could not be read as a JSON Lines table"),
    CliCase("json-array-in-jsonl", train("json_array_jsonl"), REFUSED, "must be a JSON object"),
    CliCase("bare-values-jsonl", train("bare_values_jsonl"), REFUSED, "must be a JSON object"),
    # sizes
    CliCase("huge-cell", train("huge_cell"), EITHER, "tokens", slow=True,  # tokenizing 5 MB takes a while
            note="a 5 MB cell is valid data, but its prompt may be refused as longer than the model can take"),
    CliCase("500-columns", train("wide_500", "--template-text", "c0 is {c0}, c499 is {c499}"), ACCEPTED,
            note="a wide table is valid data; this template writes two of its columns"),
    CliCase("3000-columns", train("wide", "--template-text", "c0 is {c0}, c2999 is {c2999}"), ACCEPTED, slow=True,
            note="a wide table is valid data; this template writes two of its columns"),
    CliCase("3000-columns-in-one-prompt", train("wide"), EITHER, "tokens", slow=True,  # tokenizes long prompts
            note="3000 features are valid data, but their prompt may be refused as longer than the model can take"),
    CliCase("single-row", train("single_row"), REFUSED, "at least 10 are needed"),
    # targets and values
    CliCase("one-class", train("one_class"), REFUSED, "has only one class"),
    CliCase("all-missing-target", train("all_missing_target"), REFUSED, "has no values"),
    CliCase("target-not-present", train("good", target="nope"), REFUSED, "Column 'nope' is not in the table"),
    CliCase("unknown-feature", train("good", "--features", "x1,nope"), REFUSED, "Column 'nope' is not in the table"),
    CliCase("target-as-feature", train("good", "--features", "x1,y"), REFUSED, "also listed as a feature"),
    CliCase("feature-twice", train("good", "--features", "x1,x1"), REFUSED, "listed more than once"),
    CliCase("nan-and-inf-features", train("nan_inf_values"), ACCEPTED, note="missing and infinite features are "
            "written as NA and inf"),
    CliCase("inf-in-regression-target", train("inf_regression_target"), REFUSED, "such as inf"),
    CliCase("mixed-type-feature", train("mixed_types"), ACCEPTED, note="a mixed column is text"),
    CliCase("mixed-type-target", train("mixed_target"), ACCEPTED, note="each distinct value is a class"),
    CliCase("text-target-as-regression", train("good", "--task", "regression"), REFUSED, "numeric target"),
    CliCase("300-classes", train("many_classes"), REFUSED, "more than the limit of 50"),
    CliCase("300-integer-labels", train("many_integer_labels"), ACCEPTED,
            note="an integer target with many values is a number to predict: regression"),
    CliCase("label-with-answer-mark", train("answer_mark_label"), REFUSED, "could not be read back"),
    # paths
    CliCase("missing-path", train("missing"), REFUSED, "File not found"),
    CliCase("directory-as-data", train("directory"), REFUSED, "is a folder, not a file"),
    # templates
    CliCase("template-unknown-column", train("good", "--template", "custom", "--template-text", "{nope}"),
            REFUSED, "unknown column 'nope'"),
    CliCase("template-unmatched-brace", train("good", "--template-text", "x1 is {x1"), REFUSED, "unmatched '{'"),
    CliCase("template-names-the-target", train("good", "--template-text", "{x1} gives {y}"), REFUSED,
            "uses the target column"),
    CliCase("template-without-placeholders", train("good", "--template-text", "always the same"), REFUSED,
            "no {column} placeholders"),
    # a separate test table
    CliCase("unseen-test-classes", train("good", "--test-data", "@unseen_classes_test"), REFUSED,
            "classes the training table lacks: 'r', 's'"),
    CliCase("test-table-lacks-a-column", train("good", "--test-data", "@test_lacks_column"), REFUSED,
            "lacks the columns x2"),
    CliCase("test-table-without-targets", train("good", "--test-data", "@test_without_targets"), REFUSED,
            "no rows with a value for 'y'"),
    CliCase("text-targets-in-regression-test", train("regression", "--test-data", "@text_regression_test"),
            REFUSED, "such as 'high'"),
    CliCase("test-table-is-empty", train("good", "--test-data", "@empty"), REFUSED, "is empty"),
    CliCase("test-table-is-a-png", train("good", "--test-data", "@png_as_csv"), REFUSED, "PNG image"),
    # settings
    CliCase("negative-batch-size", train("good", "--batch-size", "-1"), REFUSED, "batch size must be at least 1"),
    CliCase("zero-learning-rate", train("good", "--lr", "0"), REFUSED, "learning rate must be between 0 and 1"),
    CliCase("nan-learning-rate", train("good", "--lr", "nan"), REFUSED, "lr must be a finite number, not nan"),
    CliCase("no-epochs-no-steps", train("good", "--epochs", "0", "--max-steps", "0"), REFUSED,
            "positive number of epochs or max steps"),
    CliCase("warmup-of-one", train("good", "--warmup", "1"), REFUSED, "warm-up must be a share"),
    CliCase("zero-lora-rank", train("good", "--lora-r", "0"), REFUSED, "LoRA rank must be at least 1"),
    CliCase("dropout-of-one", train("good", "--lora-dropout", "1"), REFUSED, "LoRA dropout must be in [0, 1)"),
    CliCase("test-size-above-one", train("good", "--test-size", "1.5"), REFUSED, "test_size must be at least 0"),
    CliCase("negative-val-size", train("good", "--val-size", "-0.1"), REFUSED, "val_size must be at least 0"),
    CliCase("no-rows-left-to-train", train("good", "--test-size", "0.99"), REFUSED, "leave no rows for training"),
    CliCase("decimals-99", train("good", "--decimals", "99"), REFUSED, "decimals must be a whole number"),
    CliCase("negative-seed", train("good", "--seed", "-1"), REFUSED, "seed must be a whole number"),
    CliCase("seed-over-32-bits", train("good", "--seed", str(2**40)), REFUSED, "seed must be a whole number"),
    CliCase("missing-model-folder", train("good", "--model", "./no-such-model"), REFUSED, "does not exist"),
    CliCase("unknown-quantization", train("good", "--quant", "9bit"), USAGE, "invalid choice: '9bit'"),
    CliCase("batch-size-not-a-number", train("good", "--batch-size", "four"), USAGE, "invalid int value: 'four'"),
    CliCase("infinite-epochs", train("good", "--epochs", "inf"), REFUSED, "epochs"),
    CliCase("negative-logging-steps", train("good", "--logging-steps", "-1"), REFUSED,
            "logging_steps must not be negative"),
    CliCase("epochs-beyond-any-run", train("good", "--epochs", "1e300"), REFUSED, "epochs must be at most"),
    # settings files (train --config, as the app launches runs)
    CliCase("settings-file-missing", ("train", "--config", "{tmp}/none.json", "--out", "{out}"), REFUSED,
            "Cannot read the settings file"),
    CliCase("settings-file-not-json", settings_file_train("settings_not_json"), REFUSED,
            "Cannot read the settings file"),
    CliCase("settings-file-numeric-data-path", settings_file_train("settings_numeric_data"), REFUSED,
            "data must be text, not 5"),
    CliCase("settings-file-without-data", settings_file_train("settings_without_data"), REFUSED,
            "No table file given"),
    CliCase("settings-file-a-list", settings_file_train("settings_list"), REFUSED, "settings file"),
    CliCase("settings-file-text-batch-size", settings_file_train("settings_text_number"), REFUSED, "batch"),
    CliCase("settings-file-null-epochs", settings_file_train("settings_null_epochs"), REFUSED, "epochs"),
    # the other commands
    CliCase("predict-empty-table", predict("empty"), REFUSED, "is empty"),
    CliCase("predict-png", predict("png_as_csv"), REFUSED, "PNG image"),
    CliCase("predict-directory", predict("directory"), REFUSED, "is a folder"),
    CliCase("predict-semicolons", predict("semicolons"), REFUSED, "separated by semicolons"),
    CliCase("predict-lacks-a-feature", predict("lacks_x2"), REFUSED, "lacks the feature column(s) x2"),
    CliCase("predict-nested-jsonl-lacks-features", predict("nested_jsonl"), REFUSED, "lacks the feature column(s)"),
    CliCase("evaluate-missing-run", ("evaluate", "--run", "{tmp}/no-such-run"), REFUSED, "holds no trained adapter"),
    CliCase("boundary-folder-without-adapter", ("boundary", "--run", "{tmp}", "--out", "{out}"), REFUSED,
            "holds no trained adapter"),
    CliCase("baselines-semicolons", baselines("semicolons"), REFUSED, "separated by semicolons"),
    CliCase("baselines-one-class", baselines("one_class"), REFUSED, "only one class"),
    CliCase("baselines-negative-seed", baselines("good", "--seed", "-1"), REFUSED, "seed must be a whole number"),
    CliCase("baselines-unknown-name", ("baselines", "--data", "@good", "--target", "y", "--only", "nope"), REFUSED,
            "nope"),
    CliCase("baselines-utf8-bom", baselines("utf8_bom"), ACCEPTED, note="UTF-8 with a byte order mark is UTF-8"),
    CliCase("synth-zero-rows", ("synth", "--kind", "moons", "--n", "0", "--out", "{out}"), REFUSED, "at least 2"),
    CliCase("synth-negative-noise", ("synth", "--kind", "moons", "--noise", "-1", "--out", "{out}"), REFUSED,
            "noise must be 0 or more"),
    CliCase("synth-unknown-kind", ("synth", "--kind", "nope", "--out", "{out}"), REFUSED, "Unknown synthetic kind"),
]


def params(cases):
    """pytest.param per case: its id, and its slow mark."""
    return [pytest.param(case, id=case.id, marks=[pytest.mark.slow] * case.slow) for case in cases]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A run folder with an (empty) adapter, trained on x1 and x2: enough for predict to check its input, which
    it does before loading any model."""
    folder = tmp_path_factory.mktemp("fake") / "run"
    (folder / "adapter").mkdir(parents=True)
    info = {"task": "classification", "target": "y", "features": ["x1", "x2"], "classes": ["p", "q"], "n_dropped": 0,
            "n_train": 8, "n_val": 0, "n_test": 0}
    (folder / "dataset.json").write_text(json.dumps(info))
    (folder / "config.json").write_text(json.dumps({"model": "tiny", "quant": "none"}))
    return folder


def fill(argv, tmp_path: Path, out: Path, fake_run: Path) -> list[str]:
    filled = []
    for arg in argv:
        if arg.startswith("@"):
            filled.append(str(build(arg[1:], tmp_path)))
        else:
            for placeholder, value in (("{out}", out), ("{tmp}", tmp_path), ("{fake_run}", fake_run)):
                arg = arg.replace(placeholder, str(value))  # not str.format: templates hold braces of their own
            filled.append(arg)
    return filled


class ReachedTraining(BaseException):
    """Raised by the stand-in for the run folder's creation: the input passed every check made before it.

    A BaseException, so the CLI's own `except Exception` cannot turn it into an error message.
    """

    def __init__(self, problem: str | None):
        super().__init__(problem)
        self.problem = problem


def reached_training(out_dir, settings: dict):
    """Instead of creating the run folder: turn every row of every split into its prompt and answer, as training
    and evaluation would, and stop. A problem found here would have failed the run after its folder existed."""
    problem = None
    try:
        config = TrainConfig(**settings)
        dataset, splits = data.load_splits(config)
        template = config.template_for(dataset.features, dataset.target)
        for part in (splits.train, splits.val, splits.test):
            for row in part.to_dict("records"):
                template.example(row)
    except Exception as error:  # noqa: BLE001 - reported by the test
        problem = f"{type(error).__name__}: {error}"
    raise ReachedTraining(problem)


@dataclass
class Outcome:
    kind: str  # ACCEPTED, REFUSED, USAGE or "crashed"
    code: int | None
    stdout: str
    stderr: str
    problem: str | None = None


def run_in_process(argv, capsys, monkeypatch) -> Outcome:
    from lift_core import cli, training

    monkeypatch.setattr(training, "create_run", reached_training)
    problem, kind = None, None
    try:
        code = cli.main(argv)
    except ReachedTraining as reached:
        code, kind, problem = None, ACCEPTED, reached.problem
    except SystemExit as exit:  # argparse
        code, kind = exit.code, USAGE
    stdout, stderr = capsys.readouterr()
    if kind is None:
        kind = {0: ACCEPTED, 2: REFUSED}.get(code, "crashed")
    return Outcome(kind, code, stdout, stderr, problem)


def check_cli(case: CliCase, outcome: Outcome, out: Path, tmp_path: Path) -> None:
    shown = f"{case.id}: exit {outcome.code}\nstdout: {outcome.stdout[-2000:]}\nstderr: {outcome.stderr[-2000:]}"
    assert "Traceback" not in outcome.stdout + outcome.stderr, shown
    assert outcome.kind == case.expect or (case.expect == EITHER and outcome.kind in (ACCEPTED, REFUSED)), shown
    if outcome.kind == ACCEPTED:
        assert outcome.problem is None, f"{case.id}: accepted, but a row cannot be written: {outcome.problem}"
    elif outcome.kind == REFUSED:
        # One error line, the last; progress bars (the tiny model built on first use) may come before it.
        lines = [line for line in outcome.stderr.replace("\r", "\n").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], shown
        assert len(errors[0]) > len("error: ") + 20, shown  # a sentence, not a bare name
        assert case.says in errors[0], shown
        assert not out.exists(), f"{case.id}: the refused command left {out}"
    elif outcome.kind == USAGE:
        assert outcome.code == 2 and outcome.stderr.startswith("usage:"), shown
        last = outcome.stderr.splitlines()[-1]
        assert ": error: " in last and case.says in last, shown
    assert complete_runs(tmp_path) == []


@pytest.mark.parametrize("case", params(CLI_CASES))
def test_cli_bad_input(case, tmp_path, capsys, monkeypatch, fake_run, model_cache, one_torch_thread):
    out = tmp_path / "out"
    outcome = run_in_process(fill(case.argv, tmp_path, out, fake_run), capsys, monkeypatch)
    check_cli(case, outcome, out, tmp_path)


def test_cli_case_ids_are_unique_and_the_corpus_is_large():
    ids = [case.id for case in CLI_CASES]
    assert len(set(ids)) == len(ids) >= 60
    assert all(case.says or case.expect == ACCEPTED for case in CLI_CASES)
    assert all(case.note for case in CLI_CASES if case.expect in (ACCEPTED, EITHER))
    used = {arg[1:] for case in CLI_CASES for arg in case.argv if arg.startswith("@")}
    assert used <= set(FILES)


@pytest.mark.slow  # loads the tiny model: several seconds the first time
def test_a_setting_that_fails_only_once_the_model_is_loaded_leaves_no_complete_run(tmp_path, capsys, model_cache,
                                                                                   one_torch_thread):
    """LoRA target modules are checked against the model, so this run gets a folder before it is refused: the
    folder must say `failed`, with no adapter, and the error must still be one line."""
    from lift_core import cli

    out = tmp_path / "run"
    code = cli.main(["train", "--data", str(build("good", tmp_path)), "--target", "y", *TINY, "--max-steps", "1",
                     "--lora-targets", "no_such_proj", "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 2 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "LoRA could not be attached" in errors[0], stderr
    assert data_json(out / "status.json")["state"] == "failed"
    assert complete_runs(tmp_path) == []


# The same inputs as a user runs them: `python -m lift_core` in a subprocess, with the real run folder code.
SUBPROCESS_IDS = ("png-named-csv", "utf16-with-bom", "semicolons-in-csv", "directory-as-data", "negative-seed",
                  "unseen-test-classes", "label-with-answer-mark", "predict-lacks-a-feature", "unknown-quantization")


@pytest.mark.slow  # each starts python and imports torch: a few seconds apiece
@pytest.mark.parametrize("case", params([case for case in CLI_CASES if case.id in SUBPROCESS_IDS]))
def test_cli_bad_input_in_a_subprocess(case, tmp_path, fake_run, model_cache):
    assert case.expect in (REFUSED, USAGE)  # an accepted input would train for real
    out = tmp_path / "out"
    result = lift_cli(*fill(case.argv, tmp_path, out, fake_run), timeout=120)
    kind = USAGE if "usage:" in result.stderr else {0: ACCEPTED, 2: REFUSED}.get(result.returncode, "crashed")
    check_cli(case, Outcome(kind, result.returncode, result.stdout, result.stderr), out, tmp_path)


# ---- the web app -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AppCase:
    id: str
    file: str | None  # FILES key uploaded first; None: a fresh session with no table
    expect: str
    says: str = ""
    call: tuple = ()  # (api_name, args, kwargs) after the upload
    note: str = ""
    slow: bool = False


START = {"target": "y", "model": "tiny", "quant": "none", "max_steps": 1}


def start(**settings):
    return ("/start", (), {**START, **settings})


def estimate(**settings):
    return ("/estimate", (), {**START, **settings})


def preview(target="y", features=("x1", "x2"), task="auto", template="lift", text="", decimals=2):
    return ("/preview_prompts", (target, list(features), task, template, text, decimals), {})


def select(target, features, task="auto"):
    return ("/select", (target, list(features), task), {})


APP_CASES = [
    # uploads
    AppCase("png", "png", GRADIO, "Invalid file type", note="the upload component only takes table suffixes"),
    AppCase("zip", "zip", GRADIO, "Invalid file type"),
    AppCase("csv-gz", "csv_gz", GRADIO, "Invalid file type"),
    AppCase("png-named-csv", "png_as_csv", REFUSED, "looks like a PNG image"),
    AppCase("zip-named-csv", "zip_as_csv", REFUSED, "looks like a zip archive"),
    AppCase("pdf-named-csv", "pdf_as_csv", REFUSED, "looks like a PDF document"),
    AppCase("binary-garbage", "garbage", REFUSED, "contains binary data"),
    AppCase("xlsx-holding-csv-text", "csv_named_xlsx", REFUSED, "could not be read as an Excel table"),
    AppCase("empty-file", "empty", REFUSED, "is empty"),
    AppCase("header-only", "header_only", REFUSED, "no data rows"),
    AppCase("utf16-with-bom", "utf16", REFUSED, "UTF-16"),
    AppCase("latin1", "latin1", REFUSED, "not UTF-8 text"),
    AppCase("utf8-bom", "utf8_bom", ACCEPTED, note="UTF-8 with a byte order mark is UTF-8"),
    AppCase("gzip-named-csv", "gzip_as_csv", REFUSED, "gzip-compressed"),
    AppCase("bz2-named-csv", "bz2_as_csv", REFUSED, "bzip2-compressed"),
    AppCase("semicolons-in-csv", "semicolons", REFUSED, "separated by semicolons"),
    AppCase("pipes-in-csv", "pipes", REFUSED, "separated by pipes"),
    AppCase("tabs-in-csv", "tabs_in_csv", REFUSED, "Rename it to .tsv"),
    AppCase("ragged-rows", "ragged", REFUSED, "same number of fields"),
    AppCase("duplicate-names", "duplicate_names", REFUSED, "appears more than once"),
    AppCase("blank-name", "blank_name", ACCEPTED, note="a blank header cell is named 'Unnamed: 0'"),
    AppCase("numeric-header", "numeric_header", REFUSED, "looks like data, not column names"),
    AppCase("commas-quotes-dash-in-names", "odd_header", ACCEPTED, note="'-y' is the default target (last column)"),
    AppCase("unicode-names", "unicode_names", ACCEPTED, note="any text is a column name"),
    AppCase("very-long-names", "long_names", ACCEPTED, note="long names make long prompts, nothing worse"),
    AppCase("nested-jsonl", "nested_jsonl", ACCEPTED, note="nested values become their JSON text"),
    AppCase("malformed-jsonl", "malformed_jsonl", REFUSED, "could not be read as a JSON Lines table"),
    AppCase("json-array-in-jsonl", "json_array_jsonl", REFUSED, "must be a JSON object"),
    AppCase("huge-cell", "huge_cell", ACCEPTED, note="a 5 MB cell is valid data"),
    AppCase("500-columns", "wide_500", ACCEPTED, note="wide tables make long prompts, nothing worse"),
    AppCase("3000-columns", "wide", ACCEPTED, note="wide tables make long prompts, nothing worse", slow=True),
    AppCase("single-row", "single_row", WARNED, "at least 10 are needed"),
    AppCase("one-class", "one_class", WARNED, "has only one class"),
    AppCase("all-missing-target", "all_missing_target", WARNED, "has no values"),
    AppCase("nan-and-inf-features", "nan_inf_values", ACCEPTED, note="written as NA and inf"),
    AppCase("inf-in-regression-target", "inf_regression_target", WARNED, "such as inf"),
    AppCase("mixed-type-feature", "mixed_types", ACCEPTED, note="a mixed column is text"),
    AppCase("300-classes", "many_classes", WARNED, "more than the limit of 50"),
    AppCase("label-with-answer-mark", "answer_mark_label", WARNED, "could not be read back"),
    # choosing the target and features
    AppCase("select-unknown-target", "good", REFUSED, "Column 'nope' is not in the table", select("nope", ["x1"])),
    AppCase("select-unknown-feature", "good", REFUSED, "Column 'nope' is not in the table",
            select("y", ["x1", "nope"])),
    AppCase("select-no-features", "good", REFUSED, "no feature columns", select("y", [])),
    AppCase("select-text-target-as-regression", "good", REFUSED, "numeric target",
            select("y", ["x1", "x2"], "regression")),
    AppCase("select-without-a-table", None, REFUSED, "Load a table in the Data tab first", select(None, [])),
    # templates
    AppCase("template-unknown-column", "good", REFUSED, "unknown column 'nope'",
            preview(template="custom", text="{nope}")),
    AppCase("template-unmatched-brace", "good", REFUSED, "unmatched '{'", preview(template="custom", text="{x1")),
    AppCase("template-names-the-target", "good", REFUSED, "uses the target column",
            preview(template="custom", text="{x1} {y}")),
    AppCase("template-decimals-99", "good", GRADIO, "greater than maximum", preview(decimals=99)),
    AppCase("template-with-a-comma-name", "odd_header", ACCEPTED,
            call=preview("-y", ["income, net"], template="custom", text="net income {income, net}"),
            note="a placeholder names any column, commas included"),
    AppCase("prompts-of-nested-jsonl", "nested_jsonl", ACCEPTED, call=preview("y", ["a", "b"], template="names"),
            note="nested values become their JSON text"),
    AppCase("prompts-of-a-huge-cell", "huge_cell", ACCEPTED, call=preview("y", ["x1", "note"]),
            note="a 5 MB cell is valid data"),
    AppCase("token-count-without-a-table", None, REFUSED, "Load a table in the Data tab first",
            ("/token_stats", (None, [], "auto", "lift", "", 2, "tiny"), {})),
    # training settings, refused before a run folder
    AppCase("start-without-a-table", None, REFUSED, "Load a table in the Data tab first", start(target=None)),
    AppCase("start-zero-learning-rate", "good", REFUSED, "learning rate must be between 0 and 1", start(lr=0)),
    AppCase("start-negative-seed", "good", REFUSED, "seed must be a whole number", start(seed=-1)),
    AppCase("start-no-epochs-no-steps", "good", REFUSED, "positive number of epochs or max steps",
            start(epochs=0, max_steps=0)),
    AppCase("start-zero-batch-size", "good", GRADIO, "less than minimum value 1", start(batch_size=0)),
    AppCase("start-template-unknown-column", "good", REFUSED, "unknown column 'nope'",
            start(template="custom", template_text="{nope}")),
    AppCase("start-one-class", "one_class", REFUSED, "has only one class", start()),
    AppCase("start-label-with-answer-mark", "answer_mark_label", REFUSED, "could not be read back", start()),
    AppCase("start-missing-model-folder", "good", REFUSED, "does not exist", start(model="/no/such/model")),
    AppCase("estimate-warmup-of-one", "good", REFUSED, "warm-up must be a share", estimate(warmup=1)),
    AppCase("estimate-negative-seed", "good", REFUSED, "seed must be a whole number", estimate(seed=-1)),
    AppCase("estimate-epochs-overflow", "good", REFUSED, "epochs", estimate(epochs=1e308, max_steps=0)),
]


def upload_message(outputs) -> tuple[str, bool]:
    """(message, whether a table was loaded) of /upload's outputs."""
    message, info = outputs[0], outputs[1]
    return message, isinstance(info, str) and " rows × " in info


def call_message(api_name: str, outputs) -> str:
    if api_name == "/start":
        return outputs
    if api_name == "/estimate":  # (estimate line, message line)
        return outputs[1]
    return outputs[0]


@pytest.fixture(scope="module")
def app(app_server):
    """The module's app; once every case has run, it must still answer and hold no complete run."""
    client = new_client(app_server["url"])
    yield {"client": client, **app_server}
    # still serving after the whole corpus
    assert len(client.predict("Recommended", api_name="/preset")) == len(PRESET_FIELDS)
    assert complete_runs(Path(app_server["runs_dir"])) == []
    client.close()


def run_folders(runs_dir: Path) -> set[str]:
    return {path.name for path in Path(runs_dir).iterdir() if path.name != "uploads"}


def uploaded_files(runs_dir: Path) -> set[str]:
    return {path.name for path in (Path(runs_dir) / "uploads").glob("*")}


def stop_new_runs(runs_dir: Path, before: set[str]) -> None:
    """Kills any training a case started by mistake, so the corpus never trains and the server can close."""
    for name in run_folders(runs_dir) - before:
        launched = data_json(Path(runs_dir) / name / "launcher.json") or {}
        if launched.get("pid"):
            try:
                os.kill(launched["pid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.mark.parametrize("case", params(APP_CASES))
def test_app_bad_input(case, app, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, runs_dir = app["client"], Path(app["runs_dir"])
    client.reset_session()  # a session of its own: no table from another case
    before, uploads_before = run_folders(runs_dir), uploaded_files(runs_dir)
    step = outputs = error = None
    try:
        if case.file:
            step = "/upload"
            outputs = client.predict(handle_file(str(build(case.file, tmp_path))), api_name="/upload")
        if case.call:
            if case.file:
                message, loaded = upload_message(outputs)
                assert loaded, f"the table to test with did not load: {message}"
            step, args, kwargs = case.call
            outputs = client.predict(*args, api_name=step, **kwargs)
    except AppError as raised:
        error = raised
    finally:
        stop_new_runs(runs_dir, before)

    if case.expect == GRADIO:
        assert error is not None and case.says in str(error), f"{step} answered {outputs!r:.500}"
    else:
        assert error is None, f"{step} raised {error}"
        message, loaded = upload_message(outputs) if step == "/upload" else (call_message(step, outputs), None)
        if case.expect == ACCEPTED:
            assert message == "", message
            if step == "/upload":
                assert loaded
            if step == "/preview_prompts":
                shown = outputs[2]["data"]
                assert len(shown) == 5 and all(prompt.endswith("###") for prompt, _ in shown)
        else:
            assert message.startswith("⚠️") and case.says in message, message
            assert "Traceback" not in message
            if step == "/upload":
                assert loaded == (case.expect == WARNED), message  # a refused file leaves no table loaded
                if case.expect == REFUSED:
                    assert uploaded_files(runs_dir) == uploads_before, "a refused file was kept"
    assert run_folders(runs_dir) == before, "a case made a run folder"
    assert complete_runs(runs_dir) == []


def test_app_case_ids_are_unique_and_the_corpus_is_large():
    ids = [case.id for case in APP_CASES]
    assert len(set(ids)) == len(ids) >= 60
    assert all(case.file in FILES for case in APP_CASES if case.file)
    assert all(case.note for case in APP_CASES if case.expect == ACCEPTED)


# ---- generated tables ------------------------------------------------------------------------------------------

# Any character UTF-8 can hold (no lone surrogates), punctuation, braces, quotes, newlines and emoji included. NUL is
# left out only because hypothesis favours it, and a NUL makes the whole file binary data, a case of its own above.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
NAMES = st.one_of(ANY_TEXT, st.sampled_from(["y", "-y", "income, net", " x ", "{x}", "1", "nan", "", "Unnamed: 0"]))


def mostly(strategy, otherwise, one_in=10):
    """`strategy`, except one time in `one_in` `otherwise`."""
    return st.integers(1, one_in).flatmap(lambda pick: otherwise if pick == 1 else strategy)


CELLS = {
    "int": st.integers(-10**6, 10**6),
    "big-int": st.integers(),
    "float": st.floats(allow_nan=True, allow_infinity=True),
    "text": ANY_TEXT,
    "bool": st.booleans(),
    "mixed": st.one_of(st.integers(-5, 5), st.floats(), ANY_TEXT, st.booleans()),
    "labels": st.sampled_from(["a", "b", "c@", "d", "@@@", "1", "1.0"]),
}
CELL_KINDS = sorted(CELLS) + ["int", "float", "text", "labels"]  # huge integers (a JSON reader refuses) less often
WRITERS = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True, force_ascii=False),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


@st.composite
def tables(draw) -> pd.DataFrame:
    """Mostly 2 to 6 columns of one kind of cell each, a tenth of the cells missing, and enough rows to train on."""
    n_rows = draw(mostly(st.integers(10, 25), st.integers(0, 9), one_in=5))
    n_columns = draw(mostly(st.integers(2, 6), st.just(1)))
    columns = {}
    for position in range(n_columns):
        cells = mostly(CELLS[draw(st.sampled_from(CELL_KINDS))], st.none())
        columns[position] = draw(st.lists(cells, min_size=n_rows, max_size=n_rows))
    frame = pd.DataFrame(columns)
    # Unique names, except now and then.
    frame.columns = draw(mostly(st.lists(NAMES, min_size=n_columns, max_size=n_columns, unique=True),
                                st.lists(NAMES, min_size=n_columns, max_size=n_columns)))
    return frame


def assert_works_or_says_why(action) -> None:
    """action() either works or raises a LiftError with a message; any other exception fails the test."""
    try:
        action()
    except LiftError as error:
        assert str(error).strip()
        event(f"refused: {' '.join(str(error).split()[:4])}")  # --hypothesis-show-statistics lists these
    else:
        event("worked")


def prompts_for(frame: pd.DataFrame, draw) -> None:
    """What a table goes through up to training: a target and features chosen, the task, the split, and every
    row written with a template."""
    columns = list(frame.columns)
    target = draw(mostly(st.sampled_from(columns), st.just("not a column")))
    features = draw(mostly(st.none(), st.lists(st.sampled_from(columns), min_size=1, max_size=4), one_in=3))
    task = draw(st.sampled_from([None, "classification", "regression"]))
    dataset = data.prepare_dataset(frame, target, features=features, task=task)
    data.split_dataset(dataset, test_size=draw(st.sampled_from([0.0, 0.2, 0.5])),
                       val_size=draw(st.sampled_from([0.0, 0.1])),
                       seed=draw(mostly(st.integers(0, 2**32 - 1), st.sampled_from([-1, 2**32, 2**64]))))
    kind = draw(st.sampled_from(TEMPLATE_KINDS))
    text = draw(st.one_of(ANY_TEXT, st.sampled_from(dataset.features).map(lambda name: f"Row: {{{name}}} is")))
    template = TrainConfig(template=kind, template_text=text if kind == "custom" else None,
                           decimals=draw(st.integers(0, 8))).template_for(dataset.features, dataset.target)
    for row in dataset.frame.to_dict("records"):
        prompt, completion = template.example(row)
        assert prompt.endswith("###") and completion.endswith("@@@")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=tables(), suffix=st.sampled_from(sorted(WRITERS)), choices=st.data())
def test_generated_tables_load_and_become_prompts_or_say_why(tmp_path_factory, frame, suffix, choices):
    path = tmp_path_factory.mktemp("generated") / f"table{suffix}"
    try:
        WRITERS[suffix](frame, path)
    except Exception:  # noqa: BLE001 - a table this format cannot hold (duplicate names in JSON, mixed Parquet)
        reject()

    def load_and_prompt():
        prompts_for(data.load_table(path), choices.draw)

    assert_works_or_says_why(load_and_prompt)


@settings(max_examples=40, deadline=None)
@given(frame=tables(), test=tables(), choices=st.data())
def test_generated_frames_and_test_tables_work_or_say_why(frame, test, choices):
    """The same without a file, as the Python API passes frames, and a separate test table conformed to them."""
    frame = frame.loc[:, ~frame.columns.duplicated()]  # a frame in memory has unique names, as a loaded one has
    frame.columns = [str(name) for name in frame.columns]
    if choices.draw(st.booleans()):  # the test table takes the training table's names, so it may fit
        test.columns = (list(frame.columns) + [f"extra {i}" for i in range(len(test.columns))])[:len(test.columns)]
    test = test.loc[:, ~test.columns.duplicated()]
    test.columns = [str(name) for name in test.columns]

    def prepare_and_conform():
        dataset = data.prepare_dataset(frame, choices.draw(st.sampled_from(list(frame.columns))))
        data.conform_test_table(test, dataset)

    assert_works_or_says_why(prepare_and_conform)
