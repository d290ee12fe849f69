"""Properties of the duration parsers (core/durations.py): what `flux execution purge
--older-than` accepts, and the seconds it sends the server."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.durations import UNITS, format_seconds, parse_duration, parse_seconds
from core.errors import InvalidRequest
from tests.property.catalogs import CORE

units = st.sampled_from(sorted(UNITS))
whole = st.integers(0, 10**12 - 1)
fraction = st.text("0123456789", min_size=1, max_size=9)
accepted = st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{1,9})?[smhd]\Z")
_SHAPE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?[smhd]")


@CORE
@given(whole, units)
def test_a_whole_number_times_its_unit(n, unit):
    assert parse_duration(f"{n}{unit}") == n * UNITS[unit]


@CORE
@given(whole, fraction, units)
def test_a_decimal_number_times_its_unit(n, digits, unit):
    assert parse_duration(f"{n}.{digits}{unit}") == float(f"{n}.{digits}") * UNITS[unit]


@CORE
@given(accepted)
def test_every_accepted_duration_is_finite_and_not_negative(text):
    seconds = parse_duration(text)
    assert math.isfinite(seconds) and seconds >= 0


@CORE
@given(st.integers(1, 10**6))
def test_longer_units_mean_longer_durations(n):
    seconds = [parse_duration(f"{n}{unit}") for unit in ("s", "m", "h", "d")]
    assert seconds == sorted(seconds) and len(set(seconds)) == 4


@CORE
@given(st.text(max_size=20).filter(lambda text: not _SHAPE.fullmatch(text)))
def test_anything_else_is_one_clear_refusal(text):
    with pytest.raises(InvalidRequest, match="number followed by s, m, h or d"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text", ["", "7", "d", "-1d", "1w", "7 d", " 7d", "7d ", "1e3s", "7D", "٣d", "1.d", ".5h"]
)
def test_typical_mistakes_are_refused(text):
    with pytest.raises(InvalidRequest):
        parse_duration(text)


@CORE
@given(accepted)
def test_the_seconds_sent_read_back_as_the_duration(text):
    seconds = parse_duration(text)
    sent = format_seconds(seconds)
    assert abs(parse_seconds(sent) - seconds) <= 1e-6 * max(1.0, seconds)


@CORE
@given(
    st.text(max_size=20).filter(lambda text: not re.fullmatch(r"[0-9]{1,18}(\.[0-9]{1,9})?", text))
)
def test_seconds_refuse_anything_but_decimal_digits(text):
    with pytest.raises(InvalidRequest, match="older_than"):
        parse_seconds(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "1e3", "0x10", "", " 1"])
def test_seconds_refuse_what_float_would_take(text):
    with pytest.raises(InvalidRequest):
        parse_seconds(text)
