"""The store interface's helpers: no Ray, no database."""

from datetime import UTC, datetime

import pytest

from qflow.store.base import iso_at, now_iso


@pytest.mark.parametrize(
    "seconds",
    [
        0.0,
        1.5,
        59.999999,
        59.9999996,
        1_700_000_000.0,
        1_764_911_226.922102,
        1_764_911_226.0000004,
        2_000_000_000.123456,
        951_782_400.25,  # 2000-02-29
    ],
)
def test_iso_at_writes_what_datetime_isoformat_writes(seconds):
    assert iso_at(seconds) == datetime.fromtimestamp(seconds, UTC).isoformat()


def test_iso_at_is_right_on_both_sides_of_a_second_it_cached():
    assert iso_at(100.75) == "1970-01-01T00:01:40.750000+00:00"
    assert iso_at(101.0) == "1970-01-01T00:01:41+00:00"
    assert iso_at(100.5) == "1970-01-01T00:01:40.500000+00:00"


def test_now_iso_is_utc_now():
    before = datetime.now(UTC)
    stamp = datetime.fromisoformat(now_iso())
    assert stamp.tzinfo is not None and abs((stamp - before).total_seconds()) < 5
