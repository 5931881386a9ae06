from __future__ import annotations

import pytest

from dvoinik.intervals import wilson_interval


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(24, 48)
    assert low == pytest.approx(0.3636, abs=1e-3) and high == pytest.approx(0.6364, abs=1e-3)


def test_the_ends_are_exact_and_no_count_has_no_interval() -> None:
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert wilson_interval(0, 0) == (None, None)
