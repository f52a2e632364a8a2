"""Time claims (`exp`, `nbf`, `iat`) as RFC 7519 defines them: a JSON number of seconds since the epoch.

PyJWT reads them with int(), so it takes "9999999999" (a string) and true (a bool is an int in Python) as dates;
here a date must be a real number, finite, and between 1970 and the year 9999.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

TIME_CLAIMS = ("exp", "nbf", "iat")
LATEST = 253_402_300_799.0  # 9999-12-31T23:59:59Z: any later "date" is a forgery or a bug, not a lifetime


def numeric_date(value: object) -> float | None:
    """The date as seconds since the epoch, or None if the value is not a sane NumericDate."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 <= value <= LATEST:
        return None
    return float(value)


def time_claims_are_dates(claims: Mapping[str, Any]) -> bool:
    """Each time claim present (null counts as present) is a NumericDate."""
    return all(numeric_date(claims[name]) is not None for name in TIME_CLAIMS if name in claims)
