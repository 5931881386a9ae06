"""The Wilson score interval of a share: the one interval every measure of the project reports.

A studio's blind test, the machine blind test and every share in an evaluation report are
counts out of a few dozen; the Wilson interval stays sound there and at 0% or 100%, where
the textbook normal interval collapses to a point.
"""

from __future__ import annotations

import math

Z95 = 1.959964


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """The Wilson score interval of `successes` out of `n` (95% by default); (None, None) for n = 0."""
    if n == 0:
        return None, None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no rounding below 1 or above 0
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high
