"""Tables in, validated datasets and train/validation/test splits out."""

import json
import math
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from lift_core.errors import LiftError
from lift_core.prompts import ANSWER_END

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".parquet", ".xlsx", ".jsonl")
MAX_FILE_BYTES = 100 * 1024 * 1024
MAX_CLASSES = 50
TASKS = ("classification", "regression")

_MAX_INTEGER_CLASSES = 20  # an integer target with more distinct values than this is treated as a number
_MIN_ROWS = 10  # fewer rows cannot fill train, validation and test sets
_SEPARATORS = {".csv": ",", ".tsv": "\t"}
_TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl")
_HEADER_ROW_SUFFIXES = (".csv", ".tsv", ".xlsx")  # formats whose column names come from a first row
_FORMAT_NAMES = {".csv": "a CSV", ".tsv": "a TSV", ".parquet": "a Parquet", ".xlsx": "an Excel",
                 ".jsonl": "a JSON Lines"}
# The first bytes of files people often pick by mistake, or compress, instead of a text table.
_UNPACK = "Decompress it and load the table inside."
_WRONG_FILE = "Check that you picked the right file."
_SIGNATURES = (
    (b"\x1f\x8b", "a gzip-compressed file", _UNPACK),
    (b"BZh", "a bzip2-compressed file", _UNPACK),
    (b"\xfd7zXZ\x00", "an xz-compressed file", _UNPACK),
    (b"PK\x03\x04", "a zip archive", "Unpack it and load the table inside; an Excel workbook is a zip archive too, "
                                     "so name one .xlsx."),
    (b"\x89PNG", "a PNG image", _WRONG_FILE),
    (b"\xff\xd8\xff", "a JPEG image", _WRONG_FILE),
    (b"%PDF", "a PDF document", _WRONG_FILE),
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-32's byte order marks start with these too
# Separators people save "CSV" files with, by the name a message gives them.
_OTHER_SEPARATORS = {";": "semicolons", "|": "pipes", "\t": "tabs", ",": "commas"}
_NESTED = (dict, list, tuple, np.ndarray)  # JSON objects and arrays, Parquet lists and structs
_FIX_HINTS = {
    ".csv": "Check that every row has the same number of fields as the header row.",
    ".tsv": "Check that every row has the same number of tab-separated fields as the header row.",
    ".parquet": "Check that the file really is a Parquet file.",
    ".xlsx": "Check that the file is an Excel workbook saved as .xlsx.",
    ".jsonl": 'Each line must be one JSON object, like {"a": 1, "b": "x"}.',
}


def load_table(path, *, max_bytes=MAX_FILE_BYTES) -> pd.DataFrame:
    """Read a table file by its suffix; every problem with the file becomes one LiftError."""
    path = _table_file(path, max_bytes)
    df, header = _parse_table(path)
    _check_columns(path, df, header)
    df.columns = [str(column) for column in df.columns]
    return _nested_as_json(df)


def _table_file(path, max_bytes: int) -> Path:
    """The path, once it names a file of a supported type, not too large and holding what its suffix says."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise LiftError(f"No table file given ({path!r}). Give the path of a table file "
                        f"({', '.join(SUPPORTED_SUFFIXES)}).")
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise LiftError(f"'{path}' is a folder, not a file. Give the path of a table file "
                        f"({', '.join(SUPPORTED_SUFFIXES)}).")
    if not path.is_file():
        raise LiftError(f"File not found: {path}. Check the path and try again.")
    if suffix not in SUPPORTED_SUFFIXES:
        raise LiftError(
            f"Unsupported file type '{suffix or path.name}'. Save the table as one of: {', '.join(SUPPORTED_SUFFIXES)}."
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise LiftError(
            f"'{path.name}' is {_size_text(size)}, over the {_size_text(max_bytes)} limit. "
            "Use a smaller file, for example a sample of the rows."
        )
    if size == 0:
        raise _empty_file(path)
    if suffix in _TEXT_SUFFIXES:
        _check_text_bytes(path, suffix)
    return path


def _empty_file(path: Path) -> LiftError:
    return LiftError(f"The file '{path.name}' is empty: upload a table with a header row and at least one data row.")


def _parse_table(path: Path) -> tuple[pd.DataFrame, list]:
    """The table and its column names as written; a parser's failure becomes a LiftError that says what to fix."""
    suffix = path.suffix.lower()
    try:
        df = _read_frame(path, suffix)
        header = _header_row(path, suffix) if suffix in _HEADER_ROW_SUFFIXES and df.shape[1] else list(df.columns)
    except pd.errors.EmptyDataError as error:
        raise _empty_file(path) from error
    except UnicodeDecodeError as error:
        raise LiftError(
            f"'{path.name}' is not UTF-8 text ({error.reason} at byte {error.start}). "
            "Save it with UTF-8 encoding (in Excel: 'CSV UTF-8')."
        ) from error
    except Exception as error:  # any parser failure means the file is not a readable table
        reason = str(error).strip().split("\n")[0][:200] or type(error).__name__
        raise LiftError(
            f"'{path.name}' could not be read as {_FORMAT_NAMES[suffix]} table ({reason}). {_FIX_HINTS[suffix]}"
        ) from error
    return df, header


def _check_columns(path: Path, df: pd.DataFrame, header: list) -> None:
    """Refuses a parsed table without columns or rows, or whose column names cannot be right."""
    suffix = path.suffix.lower()
    if df.shape[1] == 0:
        raise _empty_file(path)
    if suffix in _SEPARATORS and df.shape[1] == 1:
        _check_separator(path, suffix, df)
    if suffix == ".jsonl" and not all(isinstance(column, str) for column in df.columns):
        raise LiftError(
            f"Each line of '{path.name}' must be a JSON object like {{\"a\": 1, \"b\": \"x\"}}, "
            "not a bare list or value."
        )
    if suffix in _HEADER_ROW_SUFFIXES and header and all(_is_number(name) for name in header):
        raise LiftError(
            f"The first row of '{path.name}' looks like data, not column names (every name is a number). "
            "Add a header row that names the columns."
        )
    duplicated = pd.Index([str(name) for name in header]).duplicated()
    if duplicated.any():
        raise LiftError(
            f"Column names in '{path.name}' must be unique, but '{header[duplicated.argmax()]}' appears "
            "more than once. Rename the duplicate columns."
        )
    if len(df) == 0:
        raise LiftError(f"'{path.name}' has a header but no data rows: add at least one row of data.")


def _read_frame(path: Path, suffix: str) -> pd.DataFrame:
    if suffix in _SEPARATORS:
        with warnings.catch_warnings():
            # index_col=False stops pandas from silently shifting columns when a row has more fields than the
            # header; it warns instead, and that warning must be an error rather than lost data.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, sep=_SEPARATORS[suffix], index_col=False, low_memory=False)
    if suffix == ".parquet":
        # A stored index with a name (written from an indexed frame) is data; an unnamed one is row numbers.
        frame = pd.read_parquet(path)
        return frame.reset_index(drop=all(name is None for name in frame.index.names))
    if suffix == ".xlsx":
        return pd.read_excel(path, engine="openpyxl")
    # dtype=False keeps values as written: pandas would otherwise turn a numeric "timestamp" column into dates.
    return pd.read_json(path, lines=True, dtype=False)


def _header_row(path: Path, suffix: str) -> list[str]:
    """The first row as written: pandas renames duplicate names ("a", "a.1"), which would hide them."""
    if suffix == ".xlsx":
        first = pd.read_excel(path, engine="openpyxl", header=None, nrows=1, dtype=str)
    else:
        first = pd.read_csv(path, sep=_SEPARATORS[suffix], header=None, nrows=1, dtype=str, keep_default_na=False)
    # Blank header cells get unique "Unnamed: i" names from pandas, so they are not duplicates.
    return [name for name in first.iloc[0] if isinstance(name, str) and name]


def _check_text_bytes(path: Path, suffix: str) -> None:
    """Refuses a file named as a text table that holds another kind of file, or text in UTF-16."""
    with open(path, "rb") as file:
        head = file.read(8192)
    if head.startswith(_UTF16_BOMS):
        raise LiftError(f"'{path.name}' is saved as UTF-16 text. Save it with UTF-8 encoding "
                        "(in Excel: 'CSV UTF-8').")
    known = next((known for known in _SIGNATURES if head.startswith(known[0])), None)
    if known or b"\x00" in head:
        looks_like, advice = (f": it looks like {known[1]}", known[2]) if known else (
            "", "Check that you picked the right file; text tables must be saved as UTF-8.")
        raise LiftError(f"'{path.name}' contains binary data, so it is not {_FORMAT_NAMES[suffix]} table"
                        f"{looks_like}. {advice}")


def _check_separator(path: Path, suffix: str, df: pd.DataFrame) -> None:
    """A single column whose name and first value both split at another separator: the wrong separator."""
    header = str(df.columns[0])
    values = df.iloc[:, 0].dropna()
    first = str(values.iloc[0]) if len(values) else header
    expected = _SEPARATORS[suffix]
    for separator, name in _OTHER_SEPARATORS.items():
        if separator == expected or not header.count(separator) or first.count(separator) != header.count(separator):
            continue
        fix = {"\t": "Rename it to .tsv, or save it as a comma-separated CSV.", ",": "Rename it to .csv."}.get(
            separator, "Save it as a comma-separated CSV (in Excel: 'CSV UTF-8 (Comma delimited)').")
        raise LiftError(f"'{path.name}' reads as a single column, {header!r}: its fields seem to be separated by "
                        f"{name}, not {_OTHER_SEPARATORS[expected]}. {fix}")


def _nested_as_json(df: pd.DataFrame) -> pd.DataFrame:
    """Nested values (JSON objects and arrays, Parquet lists) become their JSON text: one plain value per cell,
    which can be counted, compared and written into a prompt."""
    for column in df.columns[[pd.api.types.is_object_dtype(dtype) for dtype in df.dtypes]]:
        values = df[column]
        if values.map(lambda value: isinstance(value, _NESTED)).any():
            df[column] = values.map(lambda value: _json_text(value) if isinstance(value, _NESTED) else value)
    return df


def _json_text(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=lambda item: item.tolist() if hasattr(item, "tolist")
                      else str(item))


def _is_number(text) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def _size_text(n_bytes: int) -> str:
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} bytes"


def infer_task(y: pd.Series) -> str:
    """Guess "classification" or "regression" from the target values (missing values ignored)."""
    values = y.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "classification"
    if (values % 1 == 0).all() and values.nunique() <= _MAX_INTEGER_CLASSES:
        return "classification"
    return "regression"


def label_text(value) -> str:
    """Canonical label text, so that 1, 1.0 and "1" from different file formats all mean class "1"."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Dataset:
    frame: pd.DataFrame  # feature columns + target column, rows with missing target dropped, index reset
    target: str
    features: list[str]
    task: str  # "classification" | "regression"
    classes: list[str] | None  # sorted class labels as strings (classification only)
    n_dropped: int  # rows dropped because the target was missing


def prepare_dataset(df, target, *, features=None, task=None, max_classes=MAX_CLASSES) -> Dataset:
    """Validate the choice of target and features and turn the target into labels or floats."""
    features = _chosen_features(list(df.columns), target, features)
    if task is not None and task not in TASKS:
        raise LiftError(f"Unknown task '{task}'. Use one of: {', '.join(TASKS)}.")

    missing = df[target].isna()
    if missing.all():
        raise LiftError(
            f"The target column '{target}' has no values (every row is missing). Pick a column that has values."
        )
    frame = df.loc[~missing, features + [target]].reset_index(drop=True)
    if len(frame) < _MIN_ROWS:
        raise LiftError(
            f"Only {len(frame)} rows have a value for '{target}'; at least {_MIN_ROWS} are needed "
            "to split into train, validation and test sets. Add more rows."
        )

    task = task or infer_task(frame[target])
    classes = None
    if task == "regression":
        frame[target] = _regression_target(frame[target], target)
        if frame[target].nunique() == 1:
            raise LiftError(
                f"The target '{target}' has the same value ({frame[target].iloc[0]:g}) in every row, "
                "so there is nothing to predict. Pick another target."
            )
    else:
        frame[target] = frame[target].map(label_text).astype(str)
        classes = _class_labels(frame[target], target, max_classes)
    return Dataset(frame, target, features, task, classes, int(missing.sum()))


def _chosen_features(columns: list, target, features) -> list:
    """The feature columns, every column but the target when none are named; refused if they cannot be used."""
    if target not in columns:
        raise LiftError(_not_a_column(target, columns))
    if features is None:
        features = [column for column in columns if column != target]
    else:
        features = list(features)
        for feature in features:
            if feature not in columns:
                raise LiftError(_not_a_column(feature, columns))
        if target in features:
            raise LiftError(
                f"The target '{target}' is also listed as a feature, which would give the answer away. "
                "Remove it from the features."
            )
        if len(set(features)) != len(features):
            repeated = next(feature for feature in features if features.count(feature) > 1)
            raise LiftError(f"The feature '{repeated}' is listed more than once. List each feature once.")
    if not features:
        raise LiftError(
            f"There are no feature columns: the table needs at least one column besides the target '{target}'."
        )
    return features


def _class_labels(labels: pd.Series, target, max_classes: int) -> list[str]:
    """The sorted classes of the target's labels; refused when there is nothing to learn or the model could not
    write one of them back."""
    classes = sorted(labels.unique(), key=_class_order)
    if len(classes) == 1:
        raise LiftError(
            f"The target '{target}' has only one class ('{classes[0]}'), so there is nothing to predict. "
            "Pick another target."
        )
    unreadable = next((label for label in classes if ANSWER_END in label or label.endswith("@")), None)
    if unreadable is not None:
        raise LiftError(
            f"The target '{target}' has the class {unreadable!r}, which contains {ANSWER_END!r} or ends in '@': "
            f"the model ends each answer with {ANSWER_END!r}, so that class could not be read back. "
            "Rename that class."
        )
    if len(classes) > max_classes:
        raise LiftError(
            f"The target '{target}' has {len(classes)} classes, more than the limit of {max_classes}. "
            "If it is a number to predict, set the task to regression; otherwise pick another target."
        )
    return classes


def _not_a_column(name, columns) -> str:
    return f"Column '{name}' is not in the table. Columns are: {', '.join(map(str, columns))}."


def _regression_target(y: pd.Series, target: str) -> pd.Series:
    values = pd.to_numeric(y, errors="coerce").astype(float)
    not_numbers = ~np.isfinite(values)
    if not_numbers.any():
        example = y[not_numbers].iloc[0]
        raise LiftError(
            f"Regression needs a numeric target, but '{target}' has values that are not numbers, "
            f"such as {example if isinstance(example, numbers.Number) else repr(example)}. "
            "Pick a numeric target or set the task to classification."
        )
    return values


def _class_order(label: str):
    # Numbers in numeric order ("2" before "10"), then text labels alphabetically.
    return (0, float(label), label) if _is_number(label) else (1, 0.0, label)


@dataclass
class Splits:
    train: pd.DataFrame  # same columns as dataset.frame
    val: pd.DataFrame
    test: pd.DataFrame


def split_dataset(dataset: Dataset, *, test_size=0.2, val_size=0.1, seed=0) -> Splits:
    """test_size of all rows for test, then val_size of the rest for validation; stratified when possible.

    A size of 0 leaves that part empty (a separate test table, or no validation).
    """
    for name, size in (("test_size", test_size), ("val_size", val_size)):
        if not 0 <= size < 1:
            raise LiftError(f"{name} must be at least 0 and below 1 (got {size}).")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise LiftError(f"The seed must be a whole number from 0 to {2**32 - 1} (got {seed!r}).")
    n_rows = len(dataset.frame)
    n_test = math.ceil(test_size * n_rows)
    n_val = math.ceil(val_size * (n_rows - n_test))
    if n_rows - n_test - n_val < 1:
        raise LiftError(
            f"With {n_rows} rows, test_size={test_size} and val_size={val_size} leave no rows for training. "
            "Use smaller sizes or add rows."
        )
    rest, test = _split_off(dataset.frame, n_test, dataset, seed)
    train, val = _split_off(rest, n_val, dataset, seed)
    return Splits(*(part.reset_index(drop=True) for part in (train, val, test)))


def _split_off(frame: pd.DataFrame, n_out: int, dataset: Dataset, seed) -> tuple[pd.DataFrame, pd.DataFrame]:
    if n_out == 0:
        return frame, frame.iloc[:0]
    labels = frame[dataset.target]
    # sklearn can stratify only when every class has 2 rows and both parts can hold one row of every class.
    counts = labels.value_counts()
    stratify = (
        dataset.task == "classification" and counts.min() >= 2 and min(n_out, len(frame) - n_out) >= len(counts)
    )
    return train_test_split(frame, test_size=n_out, random_state=seed, stratify=labels if stratify else None)


def conform_test_table(table: pd.DataFrame, dataset: Dataset, role: str = "test") -> pd.DataFrame:
    """Shape a separate test (or validation) table like the training data; it may be small or hold a single class."""
    needed = dataset.features + [dataset.target]
    missing = [column for column in needed if column not in table.columns]
    if missing:
        raise LiftError(f"The {role} table lacks the columns {', '.join(missing)}, which the training table has.")
    frame = table.loc[table[dataset.target].notna(), needed].reset_index(drop=True)
    if frame.empty:
        raise LiftError(f"The {role} table has no rows with a value for '{dataset.target}'.")
    if dataset.task == "regression":
        frame[dataset.target] = _regression_target(frame[dataset.target], dataset.target)
    else:
        frame[dataset.target] = frame[dataset.target].map(label_text).astype(str)
        # Refused now, not after minutes of training: the model can only answer with the classes it was taught.
        unseen = sorted(set(frame[dataset.target]) - set(dataset.classes))
        if unseen:
            shown = ", ".join(repr(label) for label in unseen[:10]) + (", ..." if len(unseen) > 10 else "")
            raise LiftError(f"The {role} table's '{dataset.target}' has classes the training table lacks: {shown}. "
                            "Drop those rows, or add examples of them to the training table.")
    return frame


def load_splits(config) -> tuple[Dataset, Splits]:
    """The table of a TrainConfig, prepared and split as its settings say. A separate test or validation table
    replaces the share of the training table that would otherwise be held out for it."""
    dataset = prepare_dataset(load_table(config.data), config.target, features=config.features, task=config.task)
    separate = {role: conform_test_table(load_table(path), dataset, role)
                for role, path in (("test", config.test_data), ("validation", config.val_data)) if path}
    pool = split_dataset(dataset, test_size=0.0 if "test" in separate else config.test_size,
                         val_size=0.0 if "validation" in separate else config.val_size, seed=config.seed)
    return dataset, Splits(train=pool.train, val=separate.get("validation", pool.val),
                           test=separate.get("test", pool.test))
