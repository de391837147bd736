"""The Python callables a step may hold, and how they are called.

**A body** (``Step(run=fn)``) is called by ``run()`` as ``fn(**inputs)`` or, when it takes the
step context, ``fn(ctx, **inputs)``: the context comes first, positionally; each of the
step's ``inputs=`` arrives as a keyword argument of its name, its ``<+…>`` expressions
resolved. A body takes the context when it has a parameter named ``ctx``, or a first
positional parameter that is not one of its inputs::

    def checkout(): ...                    # no context, no inputs
    def checkout(ctx): ...                 # the context
    def deploy(ctx, url, retries=3): ...   # inputs={"url": ...}: the context, then the inputs
    def deploy(url): ...                   # the inputs only
    def deploy(ctx, **inputs): ...        # every input, whatever its name

Validation calls :func:`call_problem` on every body, so a body that cannot take its inputs
(``fn(ctx)`` with ``inputs={"x": …}``) is a problem before the run, not a ``TypeError`` in it.

**A duration sampler** (``Step(duration=sampler)``) is what ``simulate(durations=…)`` takes
for a step: a callable ``rng -> seconds`` (``rng`` a ``numpy.random.Generator``), or a
frozen scipy distribution (anything with ``.rvs``). Each attempt draws from the step's own
random stream.

>>> def deploy(ctx, url): ...
>>> takes_ctx(deploy, ["url"]), call_problem(deploy, ["url"]) is None
(True, True)
>>> def body(ctx): ...
>>> print(call_problem(body, ["x"])[0])
the body body(ctx) takes no parameter for the input 'x' (inputs arrive as keyword arguments)
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["call_problem", "is_sampler", "sampler_problem", "takes_ctx"]


def _signature(fn: Any) -> inspect.Signature | None:
    """``inspect.signature(fn)``, looked at once per function: it costs more than compiling the
    rest of a step, and many steps share a body (validation and the plan both ask)."""
    try:
        known: inspect.Signature | None = _SIGNATURES[fn]
        return known
    except (KeyError, TypeError):  # not seen yet, or not weak-referenceable
        pass
    sig: inspect.Signature | None
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        sig = None
    with contextlib.suppress(TypeError):
        _SIGNATURES[fn] = sig
    return sig


_SIGNATURES: weakref.WeakKeyDictionary[Any, inspect.Signature | None] = weakref.WeakKeyDictionary()


def takes_ctx(fn: Any, inputs: Iterable[str] | None = ()) -> bool:
    """True when ``fn`` takes the step context: a parameter named ``ctx``, or a first
    positional parameter that is not one of the step's inputs (those come as keywords)."""
    if not callable(fn):
        return False
    sig = _signature(fn)
    if sig is None:
        return False
    if "ctx" in sig.parameters:
        return True
    names = set(inputs or ())
    for param in sig.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD, param.VAR_POSITIONAL):
            return param.name not in names
        return False
    return False


def _shown(fn: Any, sig: inspect.Signature) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return f"{name}{sig.replace(return_annotation=sig.empty)}"


def call_problem(fn: Any, inputs: Iterable[str] = ()) -> tuple[str, str] | None:
    """``(message, fix)`` when ``run()`` could not call the body ``fn`` with these inputs
    (as ``fn(ctx, **inputs)`` or ``fn(**inputs)``), else ``None``.

    Worked out once per function and inputs, as its signature is (many steps share a body).

    >>> def body(ctx, x, y=2): ...
    >>> call_problem(body, ["x"]) is None, call_problem(body, [])[0]
    (True, 'the body body(ctx, x, y=2) needs x, which no input gives')
    """
    key = tuple(inputs or ())
    try:
        known: tuple[str, str] | None = _PROBLEMS[fn][key]
        return known
    except (KeyError, TypeError):  # not seen yet, or not weak-referenceable
        pass
    found = _call_problem(fn, key)
    with contextlib.suppress(TypeError):
        _PROBLEMS.setdefault(fn, {})[key] = found
    return found


_PROBLEMS: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], tuple[str, str] | None]] = (
    weakref.WeakKeyDictionary()
)


def _call_problem(fn: Any, inputs: tuple[str, ...]) -> tuple[str, str] | None:
    kind = _not_plain(fn)
    if kind is not None:
        name = getattr(fn, "__name__", "body")
        return (
            f"the body {name} is {kind}: run() calls a body and takes what it returns, so calling "
            "it would run nothing and the step would succeed without doing its work",
            _PLAIN_FIXES[kind].format(name=name if name.isidentifier() else "body"),
        )
    sig = _signature(fn)
    if sig is None:
        return None
    names = list(inputs or ())
    ctx = takes_ctx(fn, names)
    params = sig.parameters
    shown = _shown(fn, sig)
    name = getattr(fn, "__name__", "")
    name = name if name.isidentifier() else "body"
    first = "ctx, " if ctx else ""
    if ctx and "ctx" in names:
        return (
            f"the body {shown} takes the step context as 'ctx', and an input has that name too",
            "rename the input 'ctx'",
        )
    everything = any(p.kind is p.VAR_KEYWORD for p in params.values())
    by_name = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    refused = [n for n in names if n not in by_name and not everything]
    if refused:
        which = ", ".join(f"'{n}'" for n in refused)
        s = "s" if len(refused) > 1 else ""
        return (
            f"the body {shown} takes no parameter for the input{s} {which} "
            "(inputs arrive as keyword arguments)",
            f"give the body a parameter per input, the context first: def {name}({first}"
            f"{', '.join(names)}), or take them all: def {name}({first}**inputs)",
        )
    context = next(iter(params), None) if ctx else None
    needed = [
        n
        for n, p in params.items()
        if n != context
        and n not in names
        and p.default is p.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if needed:
        s = "s" if len(needed) > 1 else ""
        return (
            f"the body {shown} needs {', '.join(needed)}, which no input gives",
            f"add inputs={{{', '.join(f'{n!r}: …' for n in needed)}}} to the step, "
            f"or give the parameter{s} a default",
        )
    try:
        sig.bind(*((None,) if ctx else ()), **dict.fromkeys(names))
    except TypeError as err:  # what the cases above do not name (e.g. positional-only inputs)
        call = f"{name}({first}{', '.join(f'{n}=…' for n in names)})"
        return (
            f"the body {shown} cannot be called as {call}: {err}",
            f"write it as def {name}({first}{', '.join(names)}) or def {name}({first}**inputs)",
        )
    return None


_PLAIN_FIXES = {
    "an async function (async def)": "write it as a plain def that runs the coroutine to its end: "
    "def {name}(ctx): return asyncio.run(main(ctx))",
    "a generator function (it yields)": "write it as a plain def that consumes the generator: "
    "def {name}(ctx): for item in produce(): ...",
    "an async generator function": "write it as a plain def that runs the async code to its end "
    "with asyncio.run(...)",
}


def _not_plain(fn: Any) -> str | None:
    """What makes ``fn`` (or a callable object's ``__call__``) no plain function, or ``None``."""
    calls = (vars(k)["__call__"] for k in type(fn).__mro__ if "__call__" in vars(k))
    call = None if inspect.isroutine(fn) else next(calls, None)  # a callable object's method
    for target in (fn, call):
        if target is None:
            continue
        if inspect.iscoroutinefunction(target):
            return "an async function (async def)"
        if inspect.isasyncgenfunction(target):
            return "an async generator function"
        if inspect.isgeneratorfunction(target):
            return "a generator function (it yields)"
    return None


def is_sampler(value: Any) -> bool:
    """A duration sampler: a callable ``rng -> seconds`` or a frozen scipy distribution.

    >>> is_sampler(lambda rng: rng.uniform(1, 2)), is_sampler("30s"), is_sampler(30)
    (True, False, False)
    """
    return callable(value) or hasattr(value, "rvs")


def sampler_problem(value: Any) -> str | None:
    """Why the callable ``value`` cannot be a duration sampler (``simulate()`` calls it with one
    argument, the random generator), or ``None``.

    >>> sampler_problem(lambda rng: 1.0) is None, sampler_problem(lambda: 1.0)
    (True, 'the sampler <lambda>() is called with one argument, the random generator (rng)')
    """
    if not callable(value) or hasattr(value, "rvs"):
        return None
    sig = _signature(value)
    if sig is None:
        return None
    try:
        sig.bind(None)
    except TypeError:
        return f"the sampler {_shown(value, sig)} is called with one argument, the random generator (rng)"
    return None
