import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError

from inferq.core.scaling import MinMax

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 5)), elements=finite))
@settings(max_examples=200, deadline=None)
def test_fit_transform_inverse_round_trip(data: np.ndarray) -> None:
    scaler = MinMax.fit(data)
    scaled = scaler.transform(data)
    assert np.all(scaled >= -1e-9) and np.all(scaled <= 1 + 1e-9)
    np.testing.assert_allclose(scaler.inverse(scaled), data, rtol=1e-9, atol=1e-6)


@given(arrays(np.float64, st.tuples(st.integers(2, 30), st.just(1)), elements=finite, unique=True))
@settings(max_examples=100, deadline=None)
def test_fitted_range_maps_to_zero_and_one(data: np.ndarray) -> None:
    scaled = MinMax.fit(data).transform(data)
    assert scaled.min() == pytest.approx(0.0, abs=1e-12)
    assert scaled.max() == pytest.approx(1.0, abs=1e-9)


def test_course_constants_are_min_and_scale() -> None:
    # The course: prediction = (prediction + 0.1159) / 0.0000036968
    target = MinMax(min=(-0.1159,), scale=(0.0000036968,))
    assert target.inverse(np.array([[0.5]]))[0, 0] == pytest.approx((0.5 + 0.1159) / 0.0000036968)


def test_constant_column_gets_unit_scale() -> None:
    scaler = MinMax.fit(np.array([[3.0, 1.0], [3.0, 2.0]]))
    assert scaler.scale[0] == 1.0
    np.testing.assert_allclose(scaler.transform(np.array([[3.0, 1.5]])), [[0.0, 0.5]])


@pytest.mark.parametrize(
    ("minimum", "scale"),
    [((0.0,), (0.0,)), ((0.0, 1.0), (1.0,)), ((), ()), ((0.0,), (float("inf"),))],
)
def test_invalid_scalers_are_refused(minimum: tuple[float, ...], scale: tuple[float, ...]) -> None:
    with pytest.raises(ValidationError):
        MinMax(min=minimum, scale=scale)
