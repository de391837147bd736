"""Seconds from what a user gives for a step's duration, and the seeded streams they are drawn from.

A duration option's value (``durations=``, ``default=``, a step's ``duration=``) is seconds, a
Harness duration (``"1m 30s"``) or a *sampler*: a callable ``rng -> seconds`` or a scipy frozen
distribution (anything with ``.rvs``). :func:`to_seconds` checks a value (finite, ≥ 0, at most
``MAX_SECONDS``); :func:`draw` asks a sampler for one value and :func:`draw_runs` for ``runs`` at
once (the vectorised path); what a sampler raises or returns wrongly becomes a
:class:`~notebook_pipelines.errors.SimulationError` naming the step.

Randomness: :class:`Streams` gives each (step, attempt, purpose) its own generator seeded with
``(seed, fqn_key(step FQN), attempt)``, so changing one step's distribution (or adding steps)
does not shift the others' draws, and two designs that keep a step's FQN draw the same durations
for it (common random numbers).

>>> to_seconds("1m 30s", "a")
90.0
>>> import numpy as np
>>> draw_runs(lambda rng: rng.uniform(1.0, 2.0), np.random.default_rng(0), 3, "a").shape
(3,)
"""

from __future__ import annotations

import hashlib
import math
import numbers
from typing import Any

from ..definition.durations import LIMIT, MAX_SECONDS, DurationError, parse_duration
from ..errors import SimulationError

__all__ = ["DURATION", "FAILURE", "Streams", "draw", "draw_runs", "fqn_key", "to_seconds"]

#: The purposes of the random streams of a step attempt.
DURATION, FAILURE = 0, 1


class Streams:
    """One seeded random generator per (step, attempt, purpose), made when first needed."""

    __slots__ = ("made", "seed")

    def __init__(self, seed: int):
        self.seed = seed
        self.made: dict[tuple[int, int, int], Any] = {}

    def rng(self, node: Any, attempt: int, purpose: int = DURATION) -> Any:
        key = (node.index, attempt, purpose)
        rng = self.made.get(key)
        if rng is None:
            import numpy as np

            entropy = [self.seed, fqn_key(node.fqn), attempt]
            if purpose:
                entropy.append(purpose)
            rng = self.made[key] = np.random.default_rng(entropy)
        return rng


def fqn_key(fqn: str) -> int:
    """A 128-bit number for a step's FQN (no collisions in practice, unlike a 32-bit CRC)."""
    return int.from_bytes(hashlib.blake2b(fqn.encode(), digest_size=16).digest(), "little")


def draw(value: Any, rng: Any, where: str = "a step") -> Any:
    """A sampler's draw for ``where`` (a step's FQN): what it raised, or a ``None`` it returned,
    is a :class:`SimulationError` that names the step (``None`` is not 0 s)."""
    try:
        # a scipy.stats frozen distribution, or a callable rng -> seconds
        drawn = value.rvs(random_state=rng) if hasattr(value, "rvs") else value(rng)
    except Exception as err:  # the user's code: say whose sampler it was
        raise SimulationError(f"the duration sampler of {where} raised {type(err).__name__}: {err}") from err
    if drawn is None:
        raise SimulationError(
            f"the duration sampler of {where} returned None: return seconds (a number) or a "
            "duration text such as '1m 30s'"
        )
    return drawn


def to_seconds(value: Any, where: str, sampled: bool = False) -> float:
    """Seconds in ``value`` (a number, a numpy scalar or a Harness duration); an error otherwise.

    A duration is finite, ≥ 0 and at most ``MAX_SECONDS`` (100 years: what a trace timestamp
    can hold, see :mod:`~notebook_pipelines.definition.durations`).
    """
    if type(value) is float and 0.0 <= value <= MAX_SECONDS:  # the common case, without ABC checks
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
        if math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS:
            return seconds
        how = "drew" if sampled else "is"
        if seconds > MAX_SECONDS:
            clip = " (clip the distribution, e.g. min(…, 3600.0))" if sampled else ""
            raise SimulationError(
                f"the duration of {where} {how} {seconds!r}, {LIMIT}: give a shorter one{clip}"
            )
        raise SimulationError(
            f"the duration of {where} {how} {seconds!r}: durations are finite and ≥ 0 "
            + ("(clip the distribution, e.g. max(0.0, …), or use a lognormal)" if sampled else "")
        )
    try:
        parsed = parse_duration(value, where)
    except DurationError as err:
        raise SimulationError(str(err)) from None
    return 0.0 if parsed is None else parsed


def draw_runs(value: Any, rng: Any, runs: int, where: str) -> Any:
    """``runs`` draws of a sampler: vectorised when it can be, else one call per run."""
    import numpy as np

    drawn: Any = None
    try:
        drawn = value.rvs(size=runs, random_state=rng) if hasattr(value, "rvs") else value(_Sized(rng, runs))
    except Exception:  # not vectorisable (a size it does not take, a scalar expected): per run
        drawn = None
    array = None
    if drawn is not None:
        try:
            array = np.asarray(drawn, dtype=float)
        except (TypeError, ValueError):
            array = None
    if array is None or array.shape != (runs,):
        array = np.array([to_seconds(draw(value, rng, where), where, sampled=True) for _ in range(runs)])
    bad = ~(np.isfinite(array) & (array >= 0))
    if bad.any() or (array > MAX_SECONDS).any():
        i = int(np.argmax(bad | (array > MAX_SECONDS)))
        to_seconds(float(array[i]), where, sampled=True)  # raises the scheduler's error for it
    return array


class _Sized:
    """A ``numpy.random.Generator`` whose sampling methods draw ``size=runs`` values at once."""

    __slots__ = ("_rng", "_size")

    def __init__(self, rng: Any, size: int):
        self._rng, self._size = rng, size

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._rng, name)
        if not callable(method):
            return method
        size = self._size

        def sized(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("size", size)
            return method(*args, **kwargs)

        return sized
