import numpy as np
import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lift_core.data import (
    SUPPORTED_SUFFIXES,
    conform_test_table,
    infer_task,
    label_text,
    load_table,
    prepare_dataset,
    split_dataset,
)
from lift_core.errors import LiftError

PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"


def write_table(frame: pd.DataFrame, path):
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


def mixed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [25, 32, 47, 51],
            "height": [1.5, 1.75, 1.8, 1.62],
            "city": ["Paris", "Oslo", "Lima", "Oslo"],
            "label": ["yes", "no", "yes", "no"],
        }
    )


def labelled_frame(n=40, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "y": np.where(np.arange(n) % 4 == 0, "b", "a"),
        }
    )


def raises(path, match, **kwargs) -> LiftError:
    with pytest.raises(LiftError, match=match) as caught:
        load_table(path, **kwargs)
    return caught.value


def assert_table_or_lift_error(path) -> None:
    """Whatever the file holds, loading it gives a table or a LiftError with a message, never another error."""
    try:
        assert isinstance(load_table(path), pd.DataFrame)
    except LiftError as error:
        assert str(error)


# --- load_table: formats ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_every_format_round_trips(tmp_path, suffix):
    frame = mixed_frame()
    loaded = load_table(write_table(frame, tmp_path / f"table{suffix}"))
    pd.testing.assert_frame_equal(loaded, frame, check_dtype=False)
    assert pd.api.types.is_integer_dtype(loaded["age"])
    assert pd.api.types.is_float_dtype(loaded["height"])
    assert pd.api.types.is_string_dtype(loaded["city"])
    assert isinstance(loaded.index, pd.RangeIndex)


def test_suffix_is_case_insensitive(tmp_path):
    loaded = load_table(write_table(mixed_frame(), tmp_path / "TABLE.CSV"))
    assert loaded.shape == (4, 4)


def test_trailing_separators_do_not_shift_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2,\n3,4,\n")
    loaded = load_table(path)
    assert list(loaded.columns) == ["a", "b"]
    assert loaded["a"].tolist() == [1, 3]
    assert loaded["b"].tolist() == [2, 4]


def test_utf8_bom_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffcafé,b\n1,2\n".encode("utf-8"))
    assert list(load_table(path).columns) == ["café", "b"]


def test_named_parquet_index_is_kept_as_a_column(tmp_path):
    path = tmp_path / "indexed.parquet"
    mixed_frame().set_index("city").to_parquet(path)
    loaded = load_table(path)
    assert list(loaded.columns) == ["city", "age", "height", "label"]
    assert loaded["city"].tolist() == ["Paris", "Oslo", "Lima", "Oslo"]


def test_jsonl_values_stay_as_written(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"timestamp": 1600000000, "date": "2020-01-01"}\n{"timestamp": 1600000100, "date": "2020-01-02"}\n'
    )
    loaded = load_table(path)
    assert loaded["timestamp"].tolist() == [1600000000, 1600000100]
    assert loaded["date"].tolist() == ["2020-01-01", "2020-01-02"]


def test_numeric_excel_header_names_become_text(tmp_path):
    path = tmp_path / "years.xlsx"
    pd.DataFrame({"region": ["n", "s"], 2020: [1, 2]}).to_excel(path, index=False)
    assert list(load_table(path).columns) == ["region", "2020"]


# --- load_table: every bad file gets one clear LiftError ------------------------------------------------------------


def test_missing_file(tmp_path):
    raises(tmp_path / "nope.csv", "File not found: .*nope.csv")


@pytest.mark.parametrize("name", ["table.xls", "table.json", "table.txt", "table"])
def test_unsupported_suffix_lists_the_supported_ones(tmp_path, name):
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    error = raises(path, "Unsupported file type")
    assert all(suffix in str(error) for suffix in SUPPORTED_SUFFIXES)


def test_file_over_the_size_limit(tmp_path):
    path = write_table(mixed_frame(), tmp_path / "big.csv")
    raises(path, r"'big.csv' is \d+ bytes, over the 10 bytes limit", max_bytes=10)


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_zero_byte_file_is_empty(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    raises(path, "is empty: upload a table with a header row")


@pytest.mark.parametrize("name, content", [("blank.csv", "\n\n  \n"), ("blank.jsonl", "\n\n")])
def test_blank_text_file_is_empty(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    raises(path, "is empty")


def test_workbook_without_cells_is_empty(tmp_path):
    path = tmp_path / "blank.xlsx"
    openpyxl.Workbook().save(path)
    raises(path, "is empty")


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".parquet"])
def test_header_without_rows(tmp_path, suffix):
    path = write_table(mixed_frame().iloc[:0], tmp_path / f"header{suffix}")
    raises(path, "has a header but no data rows")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx"])
def test_first_row_of_numbers_means_no_header(tmp_path, suffix):
    path = tmp_path / f"noheader{suffix}"
    rows = pd.DataFrame([[1.5, 2, 3], [4.0, 5, 6]])
    if suffix == ".xlsx":
        rows.to_excel(path, index=False, header=False)
    else:
        rows.to_csv(path, index=False, header=False, sep="\t" if suffix == ".tsv" else ",")
    raises(path, "looks like data, not column names.*Add a header row")


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_duplicate_column_names(tmp_path, suffix):
    path = tmp_path / f"dup{suffix}"
    if suffix == ".xlsx":
        book = openpyxl.Workbook()
        book.active.append(["a", "b", "a"])
        book.active.append([1, 2, 3])
        book.save(path)
    else:
        path.write_text("a,b,a\n1,2,3\n")
    raises(path, "must be unique, but 'a' appears more than once")


def test_binary_garbage_named_csv(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    raises(path, "contains binary data, so it is not a CSV table")


def test_png_renamed_to_csv(tmp_path):
    path = tmp_path / "picture.csv"
    path.write_bytes(PNG_HEADER)
    raises(path, "binary data")


@pytest.mark.parametrize("suffix, kind", [(".parquet", "Parquet"), (".xlsx", "Excel")])
def test_png_renamed_to_a_binary_format(tmp_path, suffix, kind):
    path = tmp_path / f"picture{suffix}"
    path.write_bytes(PNG_HEADER)
    error = raises(path, f"could not be read as an? {kind} table")
    assert error.__cause__ is not None  # the parser's own error is kept for debugging


def test_text_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("name,city\nJosé,Zürich\n".encode("latin-1"))
    error = raises(path, "is not UTF-8 text.*Save it with UTF-8 encoding")
    assert isinstance(error.__cause__, UnicodeDecodeError)


@pytest.mark.parametrize(
    "content",
    [
        "a,b\n1,2\n3,4,5\n",  # a later row has an extra field
        "a,b\n1,2,9\n3,4,5\n",  # every row has an extra field: pandas would shift the columns silently
        'a,b\n1,"2\n3,4\n',  # a quote that never closes
    ],
)
def test_ragged_or_unparseable_csv(tmp_path, content):
    path = tmp_path / "ragged.csv"
    path.write_text(content)
    error = raises(path, "could not be read as a CSV table.*same number of fields")
    assert error.__cause__ is not None


def test_unparseable_jsonl(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    raises(path, "could not be read as a JSON Lines table.*one JSON object")


def test_jsonl_lines_must_be_objects(tmp_path):
    path = tmp_path / "arrays.jsonl"
    path.write_text("[1, 2]\n[3, 4]\n")
    raises(path, "must be a JSON object")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(min_size=1, max_size=300), suffix=st.sampled_from(SUPPORTED_SUFFIXES))
def test_arbitrary_bytes_give_a_table_or_a_lift_error(tmp_path, content, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    assert_table_or_lift_error(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.text(alphabet=st.sampled_from('ab1.,\t\n"{}[]: -'), max_size=60),
       suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_arbitrary_text_gives_a_table_or_a_lift_error(tmp_path, content, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_text(content)
    assert_table_or_lift_error(path)


# --- infer_task and labels -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, task",
    [
        (["a", "b", "a"], "classification"),
        ([True, False, True], "classification"),
        ([0, 1, 2, 1], "classification"),
        ([0.0, 1.0, np.nan, 2.0], "classification"),
        (list(range(21)), "regression"),
        (list(range(20)), "classification"),
        ([0.5, 1.0, 2.0], "regression"),
    ],
)
def test_infer_task(values, task):
    assert infer_task(pd.Series(values)) == task


@pytest.mark.parametrize(
    "value, text",
    [(1, "1"), (1.0, "1"), (np.int64(7), "7"), (np.float64(-2.0), "-2"), (2.5, "2.5"), (True, "True"), ("1.0", "1.0")],
)
def test_label_text(value, text):
    assert label_text(value) == text


# --- prepare_dataset -------------------------------------------------------------------------------------------------


def test_defaults_use_every_other_column_and_infer_the_task():
    dataset = prepare_dataset(labelled_frame(), "y")
    assert dataset.features == ["x", "colour"]
    assert dataset.target == "y"
    assert dataset.task == "classification"
    assert dataset.classes == ["a", "b"]
    assert dataset.n_dropped == 0
    assert list(dataset.frame.columns) == ["x", "colour", "y"]


def test_features_keep_their_dtype(tmp_path):
    path = write_table(labelled_frame(), tmp_path / "t.csv")
    frame = prepare_dataset(load_table(path), "y").frame
    assert pd.api.types.is_float_dtype(frame["x"])
    assert pd.api.types.is_string_dtype(frame["colour"])
    assert set(frame["colour"]) == {"red", "green", "blue"}


def test_rows_without_target_are_dropped_and_counted(tmp_path):
    frame = labelled_frame(n=20)
    frame.loc[[3, 7, 8], "y"] = None
    dataset = prepare_dataset(frame, "y")
    assert dataset.n_dropped == 3
    assert len(dataset.frame) == 17
    assert dataset.frame.index.tolist() == list(range(17))
    assert dataset.frame["x"].tolist() == frame["x"].drop([3, 7, 8]).tolist()


def test_rows_without_target_in_a_csv_are_dropped(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("x,y\n" + "".join(f"{i},{'' if i % 5 == 0 else i % 2}\n" for i in range(30)))
    dataset = prepare_dataset(load_table(path), "y")
    assert dataset.n_dropped == 6
    assert dataset.classes == ["0", "1"]  # floats 0.0/1.0 (NaN made the column float) print as integers


def test_classes_are_sorted_numbers_first_then_text():
    frame = pd.DataFrame({"x": range(12), "y": [10, 2, 1, 10, 2, 1, 10, 2, 1, 2, 1, 10]})
    dataset = prepare_dataset(frame, "y")
    assert dataset.classes == ["1", "2", "10"]
    assert dataset.frame["y"].tolist()[:3] == ["10", "2", "1"]


def test_regression_target_becomes_float():
    frame = pd.DataFrame({"x": range(30), "y": range(30)})
    dataset = prepare_dataset(frame, "y", task="regression")
    assert dataset.task == "regression"
    assert dataset.classes is None
    assert dataset.frame["y"].dtype == np.float64
    assert dataset.frame["y"].sum() == sum(range(30))


def test_unknown_target_lists_the_columns():
    frame = pd.DataFrame({"a": [1], "b": [2], "c": [3]})
    with pytest.raises(LiftError, match=r"^Column 'spam' is not in the table\. Columns are: a, b, c\.$"):
        prepare_dataset(frame, "spam")


def test_unknown_feature_lists_the_columns():
    with pytest.raises(LiftError, match="Column 'size' is not in the table. Columns are: x, colour, y"):
        prepare_dataset(labelled_frame(), "y", features=["x", "size"])


def test_target_among_features():
    with pytest.raises(LiftError, match="target 'y' is also listed as a feature"):
        prepare_dataset(labelled_frame(), "y", features=["x", "y"])


def test_feature_listed_twice():
    with pytest.raises(LiftError, match="'x' is listed more than once"):
        prepare_dataset(labelled_frame(), "y", features=["x", "x"])


@pytest.mark.parametrize("features", [None, []])
def test_no_features(features):
    frame = pd.DataFrame({"y": ["a", "b"] * 10})
    with pytest.raises(LiftError, match="no feature columns"):
        prepare_dataset(frame, "y", features=features)


def test_target_all_missing():
    frame = labelled_frame().assign(y=np.nan)
    with pytest.raises(LiftError, match="'y' has no values"):
        prepare_dataset(frame, "y")


def test_constant_class_target():
    with pytest.raises(LiftError, match="only one class \\('a'\\)"):
        prepare_dataset(labelled_frame().assign(y="a"), "y")


def test_constant_regression_target():
    with pytest.raises(LiftError, match="same value \\(3.5\\) in every row"):
        prepare_dataset(labelled_frame().assign(y=3.5), "y", task="regression")


def test_too_many_classes_suggests_regression():
    frame = pd.DataFrame({"x": range(60), "y": [f"c{i}" for i in range(60)]})
    with pytest.raises(LiftError, match="60 classes, more than the limit of 50.*set the task to regression"):
        prepare_dataset(frame, "y")
    assert len(prepare_dataset(frame, "y", max_classes=60).classes) == 60


def test_regression_on_text_target_names_a_bad_value():
    frame = pd.DataFrame({"x": range(12), "y": ["1.5"] * 6 + ["n/a"] + ["2.5"] * 5})
    with pytest.raises(LiftError, match="not numbers, such as 'n/a'"):
        prepare_dataset(frame, "y", task="regression")


def test_regression_accepts_numbers_written_as_text():
    frame = pd.DataFrame({"x": range(12), "y": ["1.5", "2.5"] * 6})
    assert prepare_dataset(frame, "y", task="regression").frame["y"].tolist() == [1.5, 2.5] * 6


def test_too_few_rows():
    frame = labelled_frame(n=12)
    frame.loc[:2, "y"] = None
    with pytest.raises(LiftError, match="Only 9 rows have a value for 'y'; at least 10"):
        prepare_dataset(frame, "y")


def test_unknown_task():
    with pytest.raises(LiftError, match="Unknown task 'clustering'"):
        prepare_dataset(labelled_frame(), "y", task="clustering")


# --- split_dataset ---------------------------------------------------------------------------------------------------


def classes_dataset(n=200, minority=0.3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.where(np.arange(n) < round(minority * n), "rare", "common")
    frame = pd.DataFrame({"x": rng.normal(size=n), "id": range(n), "y": labels})
    return prepare_dataset(frame, "y", features=["x", "id"])


def test_default_split_sizes():
    splits = split_dataset(classes_dataset(n=100))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (72, 8, 20)
    for part in (splits.train, splits.val, splits.test):
        assert list(part.columns) == ["x", "id", "y"]
        assert isinstance(part.index, pd.RangeIndex)


def test_parts_are_disjoint_and_cover_every_row():
    splits = split_dataset(classes_dataset(n=100), seed=3)
    ids = [set(part["id"]) for part in (splits.train, splits.val, splits.test)]
    assert sum(map(len, ids)) == 100
    assert set.union(*ids) == set(range(100))


def test_classification_split_is_stratified():
    splits = split_dataset(classes_dataset(n=200, minority=0.3), seed=5)
    assert splits.test["y"].value_counts().to_dict() == {"common": 28, "rare": 12}
    assert splits.val["y"].value_counts().to_dict() == {"common": 11, "rare": 5}
    assert splits.train["y"].value_counts().to_dict() == {"common": 101, "rare": 43}


def test_same_seed_same_split_and_other_seed_other_split():
    dataset = classes_dataset()
    first, again, other = split_dataset(dataset, seed=1), split_dataset(dataset, seed=1), split_dataset(dataset, seed=2)
    pd.testing.assert_frame_equal(first.test, again.test)
    pd.testing.assert_frame_equal(first.val, again.val)
    assert set(first.test["id"]) != set(other.test["id"])


def test_zero_sizes_leave_empty_parts():
    dataset = classes_dataset(n=50)
    no_val = split_dataset(dataset, val_size=0)
    assert (len(no_val.train), len(no_val.val), len(no_val.test)) == (40, 0, 10)
    assert list(no_val.val.columns) == ["x", "id", "y"]
    no_test = split_dataset(dataset, test_size=0, val_size=0.2)
    assert (len(no_test.train), len(no_test.val), len(no_test.test)) == (40, 10, 0)


def test_singleton_class_falls_back_to_unstratified():
    frame = labelled_frame(n=30)
    frame.loc[0, "y"] = "lonely"
    splits = split_dataset(prepare_dataset(frame, "y"))
    assert sum(len(part) for part in (splits.train, splits.val, splits.test)) == 30


def test_more_classes_than_test_rows_falls_back_to_unstratified():
    frame = pd.DataFrame({"x": range(12), "y": [f"c{i // 2}" for i in range(12)]})  # 6 classes, 3 test rows
    splits = split_dataset(prepare_dataset(frame, "y"))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 1, 3)


def test_regression_split():
    frame = pd.DataFrame({"x": range(50), "y": np.linspace(0, 1, 50)})
    splits = split_dataset(prepare_dataset(frame, "y"), seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (36, 4, 10)


@pytest.mark.parametrize(
    "sizes, match", [((1.0, 0.1), "test_size"), ((0.2, -0.1), "val_size"), ((0.6, 0.9), "no rows for training")]
)
def test_bad_split_sizes(sizes, match):
    with pytest.raises(LiftError, match=match):
        split_dataset(classes_dataset(n=20), test_size=sizes[0], val_size=sizes[1])


def test_a_test_table_with_classes_the_training_table_lacks_is_refused_up_front():
    dataset = prepare_dataset(pd.DataFrame({"x": range(12), "y": ["cat", "dog"] * 6}), "y")
    assert conform_test_table(pd.DataFrame({"x": [1, 2], "y": ["dog", "cat"]}), dataset)["y"].tolist() == ["dog", "cat"]
    with pytest.raises(LiftError, match=r"classes the training table lacks: 'bird', 'fish'\. Drop those rows"):
        conform_test_table(pd.DataFrame({"x": [1, 2, 3], "y": ["fish", "cat", "bird"]}), dataset)
