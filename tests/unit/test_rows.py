from typing import Any

import numpy as np
import pytest

from inferq.core.constants import COURSE_FEATURES
from inferq.core.rows import RowValidator
from inferq.errors import MAX_FIELD_ERRORS, InvalidInput

ROW = {name: 1.0 for name in COURSE_FEATURES} | {"critic_rating": 3.5, "unit_price": 59.99}


@pytest.fixture()
def validator() -> RowValidator:
    return RowValidator(COURSE_FEATURES, max_rows=5)


def test_one_row_or_many_in_feature_order(validator: RowValidator) -> None:
    one = validator.validate(ROW)
    assert one.shape == (1, 9)
    assert one[0, 0] == 3.5 and one[0, -1] == 59.99
    many = validator.validate([ROW, {**ROW, "unit_price": 19.99}])
    np.testing.assert_array_equal(many[:, -1], [59.99, 19.99])


def test_ints_are_numbers(validator: RowValidator) -> None:
    assert validator.validate({**ROW, "is_action": 1})[0, 1] == 1.0


def _codes(validator: RowValidator, rows: Any) -> list[tuple[Any, Any, str]]:
    with pytest.raises(InvalidInput) as info:
        validator.validate(rows)
    assert info.value.info["code"] == "invalid_input"
    return [(e["row"], e["field"], e["code"]) for e in info.value.details]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("3.5", "not_a_number"),
        (True, "not_a_number"),
        (None, "not_a_number"),
        ([1.0], "not_a_number"),
        (float("nan"), "not_finite"),
        (float("inf"), "not_finite"),
        (float("-inf"), "not_finite"),
        (1e300, "out_of_range"),
        (-1e13, "out_of_range"),
    ],
)
def test_bad_values_name_row_field_and_reason(
    validator: RowValidator, value: Any, code: str
) -> None:
    assert _codes(validator, [ROW, {**ROW, "critic_rating": value}]) == [(1, "critic_rating", code)]


def test_missing_and_unknown_fields(validator: RowValidator) -> None:
    row = {k: v for k, v in ROW.items() if k != "is_sports"} | {"colour": 1.0}
    assert sorted(_codes(validator, row)) == [
        (0, "colour", "unknown_field"),
        (0, "is_sports", "missing_field"),
    ]


def test_every_error_of_a_job_is_reported(validator: RowValidator) -> None:
    rows = [{**ROW, "unit_price": "x"}, ROW, {**ROW, "is_action": float("nan")}]
    assert _codes(validator, rows) == [
        (0, "unit_price", "not_a_number"),
        (2, "is_action", "not_finite"),
    ]


@pytest.mark.parametrize(
    ("rows", "code"),
    [
        ([], "empty_job"),
        ([ROW] * 6, "too_many_rows"),
        ("rows", "rows_not_a_list"),
        (42, "rows_not_a_list"),
    ],
)
def test_job_shape_errors(validator: RowValidator, rows: Any, code: str) -> None:
    assert [c for _, _, c in _codes(validator, rows)] == [code]


def test_a_row_that_is_not_an_object(validator: RowValidator) -> None:
    assert _codes(validator, [ROW, [1, 2]]) == [(1, None, "row_not_an_object")]


def test_empty_row_lists_every_missing_feature(validator: RowValidator) -> None:
    codes = _codes(validator, [{}])
    assert {field for _, field, _ in codes} == set(COURSE_FEATURES)
    assert {code for _, _, code in codes} == {"missing_field"}


def test_a_flood_of_unknown_fields_gets_a_small_answer(validator: RowValidator) -> None:
    # 5 rows x 100,000 unknown keys: refused before pydantic builds an error per key.
    rows = [{**ROW, **{f"k{i}": 1 for i in range(100_000)}} for _ in range(5)]
    with pytest.raises(InvalidInput) as info:
        validator.validate(rows)
    assert len(info.value.details) == MAX_FIELD_ERRORS
    assert info.value.info["errors_omitted"] == 500_000 - MAX_FIELD_ERRORS
    assert {e["code"] for e in info.value.details} == {"unknown_field"}


def test_every_error_list_is_capped_and_counted() -> None:
    error = InvalidInput.with_errors("m", [{"row": i} for i in range(250)])
    assert len(error.details) == MAX_FIELD_ERRORS and error.info["errors_omitted"] == 150
    assert "errors_omitted" not in InvalidInput.with_errors("m", [{"row": 0}]).info
