"""Row-level checks (r3lm/data/checks.py) and the one-line InputError they raise."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from conftest import assert_input_error

from r3lm.data.checks import (
    check_sequences,
    check_unique_ids,
    normalize_chromosome,
    parse_numbers,
    require_columns,
)
from r3lm.errors import InputError


def rows_for(series: pd.Series) -> pd.Series:
    return pd.Series(np.arange(1, len(series) + 1), index=series.index)


def test_input_error_is_one_line_with_file_row_column_and_exit_code_2() -> None:
    error = InputError("not a number: 'abc'", path="data/x.tsv", row=12, column="activity")
    assert str(error) == "data/x.tsv, row 12, column 'activity': not a number: 'abc'"
    assert error.exit_code == 2
    assert str(InputError("bad", path="config")) == "config: bad"
    assert str(InputError("bad")) == "bad"


@pytest.mark.parametrize(("value", "expected"), [
    ("7", "chr7"), ("chr7", "chr7"), ("Chr7", "chr7"), ("CHR7", "chr7"), (" 19 ", "chr19"), (7, "chr7"),
    ("x", "chrX"), ("X", "chrX"), ("chrx", "chrX"), ("Y", "chrY"), ("M", "chrM"), ("MT", "chrM"), ("chrMT", "chrM"),
    ("chrUn_KI270302v1", "chrUn_KI270302v1"), ("", None), ("NA", None), ("nan", None), (None, None),
    (float("nan"), None),
])
def test_normalize_chromosome(value: object, expected: str | None) -> None:
    assert normalize_chromosome(value) == expected


def test_check_sequences_error_names_first_bad_row_and_the_character() -> None:
    sequences = pd.Series(["ACGT", "ACGT", "ACNT", "ACXT"])
    with pytest.raises(InputError) as caught:
        check_sequences(sequences, path="t.tsv", column="seq", policy="error", drops=Counter())
    message = assert_input_error(caught.value, path="t.tsv", row=3, column="seq")
    assert "'N' at position 3" in message


def test_check_sequences_drop_counts_each_reason() -> None:
    sequences = pd.Series(["ACGT", "ACNT", "", "ACG", "TTTT", "acgt"])
    drops: Counter = Counter()
    keep = check_sequences(sequences, path="t.tsv", column="seq", policy="drop", drops=drops, length=4)
    # lower case is not upper-cased here (callers do that), so 'acgt' is foreign characters too
    assert keep.tolist() == [True, False, False, False, True, False]
    assert drops == Counter({"sequence_not_acgt": 3, "sequence_wrong_length": 1})


def test_check_sequences_wrong_length_error_uses_given_row_numbers() -> None:
    sequences = pd.Series(["ACGT", "ACGTA"], index=[10, 11])
    with pytest.raises(InputError) as caught:
        check_sequences(sequences, path="t.tsv", column="seq", policy="error", drops=Counter(), length=4,
                        row_numbers=pd.Series([40, 41], index=[10, 11]))
    message = assert_input_error(caught.value, path="t.tsv", row=41, column="seq")
    assert "5 bp, expected 4 bp" in message


def test_check_unique_ids_names_the_repeat_and_the_original() -> None:
    ids = pd.Series(["a", "b", "c", "b", "b"])
    with pytest.raises(InputError) as caught:
        check_unique_ids(ids, path="t.tsv", column="id", policy="error", drops=Counter(), row_numbers=rows_for(ids))
    message = assert_input_error(caught.value, path="t.tsv", row=4, column="id")
    assert "repeats row 2" in message
    drops: Counter = Counter()
    keep = check_unique_ids(ids, path="t.tsv", column="id", policy="drop", drops=drops, row_numbers=rows_for(ids))
    assert keep.tolist() == [True, True, True, False, False]
    assert drops == Counter({"duplicate_id": 2})


def test_parse_numbers_missing_is_nan_and_text_is_an_error() -> None:
    values = pd.Series(["1.5", "", "NA", "nan", " -2e-1 ", "None"])
    parsed = parse_numbers(values, path="t.tsv", column="a", row_numbers=rows_for(values))
    assert parsed.iloc[0] == 1.5 and parsed.iloc[4] == pytest.approx(-0.2)
    assert parsed.isna().tolist() == [False, True, True, True, False, True]
    bad = pd.Series(["1", "2", "abc"])
    with pytest.raises(InputError) as caught:
        parse_numbers(bad, path="t.tsv", column="a", row_numbers=rows_for(bad))
    assert "not a number: 'abc'" in assert_input_error(caught.value, path="t.tsv", row=3, column="a")
    numeric = pd.Series([1, 2, 3])
    assert parse_numbers(numeric, path="t.tsv", column="a", row_numbers=rows_for(numeric)).dtype == float


@pytest.mark.parametrize("values", [pd.Series(["1", "inf"]), pd.Series([1.0, float("-inf")])])
def test_parse_numbers_rejects_infinities_in_text_and_numeric_columns(values: pd.Series) -> None:
    with pytest.raises(InputError) as caught:
        parse_numbers(values, path="t.tsv", column="a", row_numbers=rows_for(values))
    assert "not a finite number" in assert_input_error(caught.value, path="t.tsv", row=2, column="a")


def test_require_columns_names_the_missing_one_and_what_exists() -> None:
    with pytest.raises(InputError) as caught:
        require_columns(pd.Index(["seq_id", "seq"]), ["seq", "mean_value"], path="t.tsv")
    message = assert_input_error(caught.value, path="t.tsv", row=None, column="mean_value")
    assert "'seq_id', 'seq'" in message
    require_columns(pd.Index(["a", "b"]), ["b"], path="t.tsv")
