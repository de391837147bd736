"""Harness durations: ``"250ms"``, ``"10s"``, ``"1m 30s"``, ``"1h"``, ``"2d"``, ``"1w"``.

Plain numbers are seconds. ``None`` stays ``None`` (no limit).

**Bound.** A duration (a step's run time, a timeout, a retry interval, a manual-intervention
wait) is at most ``MAX_SECONDS``, one hundred years. Traces stamp times as ``datetime64[ns]``,
which ends on 2262-04-11: a value past what it can hold used to wrap the int64 nanoseconds
around and stamp an ``end`` before the ``start`` (``1e10`` seconds gave 1733). One hundred
years is far beyond any real step, timeout or wait, and small enough that a run starting any
time before 2162 can hold one such value; the simulation also refuses a run whose virtual clock
would pass the end of the timestamp range (many long values in a row), so a trace is never
corrupted.

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

from ..errors import DurationError, DurationTooLong
from .limits import short

__all__ = ["LIMIT", "MAX_SECONDS", "DurationError", "DurationTooLong", "format_duration", "parse_duration"]

#: The longest duration accepted: one hundred (Julian) years, in seconds (see the module notes).
MAX_SECONDS = 100 * 365.25 * 86400.0

_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|w|d|h|m|s)\s*")


def parse_duration(value: str | float | int | None, where: str = "") -> float | None:
    """Seconds in a Harness duration (units w, d, h, m, s, ms) or a plain number of seconds.

    Raises:
        DurationError: naming the bad value, where it was found and the accepted forms.
        DurationTooLong: (a ``DurationError``) the value is longer than ``MAX_SECONDS``.
    """
    if value is None:
        return None
    if type(value) is float or type(value) is int:  # the common case: seconds in range (NaN, ±inf fail)
        if 0 <= value <= MAX_SECONDS:
            return float(value)
    elif type(value) is str:
        known = _PARSED.get(value)
        if known is not None:
            return known
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DurationError(_message(value, where))
    seconds: float | int | None
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parts(text)
    else:
        seconds = value
    if seconds is None:
        raise DurationError(_message(value, where))
    # an int is compared exactly: it may be too big for a float
    bad = seconds < 0 if type(seconds) is int else not math.isfinite(seconds) or seconds < 0
    if bad:
        raise DurationError(_message(value, where))
    if seconds > MAX_SECONDS:
        raise DurationTooLong(too_long(value, where))
    if type(value) is str and len(value) <= 64:
        if len(_PARSED) >= _PARSED_MAX:  # many distinct texts: start over (bounded memory)
            _PARSED.clear()
        _PARSED[value] = float(seconds)
    return float(seconds)


#: Seconds of the (short) duration texts read so far (valid ones; at most ``_PARSED_MAX``): a
#: pipeline repeats a few texts ("10m", "1h") on many nodes, each read by validation, the
#: compiler and the engine.
_PARSED: dict[str, float] = {}
_PARSED_MAX = 4096


def _parts(text: str) -> float | None:
    """Seconds in ``"1m 30s"``-style text, or None when it is not one."""
    pos, total = 0, 0.0
    # one anchored match after another: linear in the text (a search, as finditer does, would
    # try every start again and take quadratic time on a long run of digits without a unit)
    while pos < len(text) and (match := _PART.match(text, pos)):
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total if text and pos == len(text) else None


def too_long(value: object, where: str = "") -> str:
    """The message for a duration longer than ``MAX_SECONDS``."""
    at = f" in {where}" if where else ""
    return f"the duration {short(value)}{at} is {LIMIT}: give a shorter duration"


#: Why a duration is refused as too long (for messages).
LIMIT = f"longer than the limit of 100 years ({MAX_SECONDS:.0f} seconds) that trace timestamps can hold"


def _message(value: object, where: str) -> str:
    at = f" in {where}" if where else ""
    return (
        f"cannot read the duration {short(value)}{at}: write a number of seconds or a Harness duration "
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
