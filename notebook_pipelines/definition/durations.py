"""Harness durations: ``"250ms"``, ``"10s"``, ``"1m 30s"``, ``"1h"``, ``"2d"``, ``"1w"``.

Plain numbers are seconds. ``None`` stays ``None`` (no limit).

>>> parse_duration("1m 30s")
90.0
>>> parse_duration("250ms")
0.25
>>> parse_duration(5)
5.0
>>> format_duration(90.5)
'1m 30.5s'
"""

from __future__ import annotations

import math
import re

from ..errors import PipelineError

__all__ = ["DurationError", "format_duration", "parse_duration"]

_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|w|d|h|m|s)\s*")


class DurationError(PipelineError, ValueError):
    """A duration that cannot be parsed."""


def parse_duration(value: str | float | int | None, where: str = "") -> float | None:
    """Seconds in a Harness duration (units w, d, h, m, s, ms) or a plain number of seconds.

    Raises:
        DurationError: naming the bad value, where it was found and the accepted forms.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise DurationError(_message(value, where))
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise DurationError(_message(value, where))
        return float(value)
    if not isinstance(value, str):
        raise DurationError(_message(value, where))
    text = value.strip()
    try:
        return parse_duration(float(text), where)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text or not math.isfinite(total):
        raise DurationError(_message(value, where))
    return total


def _message(value: object, where: str) -> str:
    at = f" in {where}" if where else ""
    return (
        f"cannot read the duration {value!r}{at}: write a number of seconds or a Harness duration "
        "with units w, d, h, m, s, ms, e.g. '250ms', '10s', '1m 30s', '1h'"
    )


def format_duration(seconds: float | None) -> str:
    """A short human form of a number of seconds (``'1m 30.5s'``, ``'250ms'``)."""
    if seconds is None or seconds != seconds:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds >= 0.001 or seconds == 0 else f"{seconds * 1e6:.0f}µs"
    parts = []
    rest = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if rest >= size:
            n = int(rest // size)
            parts.append(f"{n}{unit}")
            rest -= n * size
    if rest > 1e-9 or not parts:
        parts.append(f"{rest:.3g}s" if rest < 10 else f"{rest:.4g}s")
    return " ".join(parts)
