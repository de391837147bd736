"""Options keyed by step: a mapping of step FQNs, step ids or globs to values, resolved per step.

What ``simulate()``, ``monte_carlo()`` and the what-ifs take per step (``durations=``,
``failures=``, ``interventions=``, ``outputs=``, ``scale=``) is a mapping whose keys name steps:
an FQN, a step id, or a glob (``fnmatch`` syntax, matched against the FQN and the id:
``"deploy_*"``, ``"*.tests.steps.*"``). Inside loops (R46) a key may also name a step as a trace
prints it: a looped step's postfixed id (``compile_0_1``) or an FQN with each looped node's
postfix. :class:`StepTable` reads such a mapping once and answers per plan node; a key that
matches no step is an error (:func:`unknown_key_error`, with a suggestion), since a typo would
silently simulate something else.

Globs and iteration names are matched with RE2 (linear time, whatever the key).

>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("deploy_eu")
...     _ = s.step("test")
>>> plan = p.plan()
>>> table = StepTable("durations", {"deploy_*": 5, "test": 2}, plan, strict=True)
>>> [table.get(n) for n in plan.steps]
[5, 2]
>>> table.get(plan.root) is MISSING
True
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import weakref
from typing import Any

from ..definition.looping import iterations, runtime_values
from ..errors import SimulationError

__all__ = ["MISSING", "StepTable", "unknown_key_error"]

#: What :meth:`StepTable.get` returns for a step the mapping does not name (``None`` is a value).
MISSING = object()
_GLOB = re.compile(r"[*?\[]")


class StepTable:
    """The values of one option, keyed by step FQN, step id or glob; resolved once per step.

    Precedence: the FQN, then the id, then the first glob (in the mapping's order) that
    matches the FQN or the id.
    """

    def __init__(self, option: str, mapping: Any, plan: Any, strict: bool):
        self.option = option
        self.exact: dict[str, Any] = {}
        self.globs: list[tuple[Any, str, Any]] = []
        self.cache: dict[int, Any] = {}
        items = mapping.items() if hasattr(mapping, "items") else None
        if items is None:
            hint = ""
            if option == "failures" and isinstance(mapping, str):
                hint = f' ({mapping!r}: failures="history", with durations= a history, injects its rates)'
            raise SimulationError(
                f"{option}= takes a mapping of step ids, FQNs or globs to values, "
                f"not {type(mapping).__name__}{hint}"
            )
        for key, value in items:
            if not isinstance(key, str):
                raise SimulationError(f"{option}: the key {key!r} is not a step id, FQN or glob (a string)")
            if _GLOB.search(key):
                self.globs.append((_glob(key).fullmatch, key, value))
            else:
                self.exact[key] = value
        if strict:
            self._check(plan)

    def _check(self, plan: Any) -> None:
        unknown = self.unmatched(plan)
        if unknown:
            raise unknown_key_error(self.option, plan, unknown[0])

    def unmatched(self, plan: Any) -> list[str]:
        """The keys that match no step of ``plan``."""
        names = {name for n in plan.nodes if n.kind == "step" for name in (n.fqn, n.id)}
        unknown = [key for key in self.exact if key not in names and not _iteration_name(plan, key)]
        return unknown + [key for match, key, _ in self.globs if not any(match(name) for name in names)]

    def get(self, node: Any) -> Any:
        """The value for ``node``, or ``MISSING``."""
        if node.index in self.cache:
            return self.cache[node.index]
        origin = node.origin  # an iteration's copy (R46): its own names, its looped row's, the plan node's
        if origin is None:
            value = self.lookup((node.fqn, node.id))
        else:
            looped = node.looped.fqn if node.looped is not None and node.kind == "step" else node.fqn
            value = self.lookup((node.fqn, node.id, looped, origin.fqn, origin.id))
        self.cache[node.index] = value
        return value

    def lookup(self, names: tuple[str, ...]) -> Any:
        """The value for a step known by ``names`` (most specific first), or ``MISSING``."""
        for name in names:
            value = self.exact.get(name, MISSING)
            if value is not MISSING:
                return value
        for match, _key, candidate in self.globs:
            if any(match(name) for name in names):
                return candidate
        return MISSING

    def names_in(self, plan: Any, trace: Any) -> dict[str, tuple[str, ...]]:
        """Per step FQN of ``trace`` (a run of ``plan``), the names :meth:`get` would try."""
        from ..definition.looping import is_iteration

        rows = trace[trace["kind"] == "step"].drop_duplicates("fqn")
        out: dict[str, tuple[str, ...]] = {}
        loops = [n for n in plan.steps if n.strategy is not None or n.index in plan.inside_loops()]
        for fqn, step, parent in zip(rows["fqn"].astype(str), rows["step"].astype(object), rows["parent"]):
            node = plan.by_fqn.get(fqn)
            if node is not None:
                out[fqn] = (fqn, node.id)
                continue
            looped = parent if is_iteration(fqn, parent) else fqn
            origin = next((n for n in loops if (p := _pattern(n)) is not None and p.fullmatch(fqn)), None)
            names: tuple[str, ...] = (fqn, str(step), str(looped))
            out[fqn] = names + ((origin.fqn, origin.id) if origin is not None else ())
        return out


_POSTFIX = re.compile(r"(?:_[A-Za-z0-9$]+)+\Z")
_SHOWN = 1_000  # the most postfixes of a looped node spelled out in a key's pattern


def _iteration_name(plan: Any, key: str) -> bool:
    """True when ``key`` names a step as a trace of ``plan`` prints it inside loops (R46): a
    looped step's postfixed id (``compile_0_1``), or an FQN with the postfix of each looped
    node above the step, the step's own optional (``…steps.compile_0_1``,
    ``…steps.regional_0_0.steps.deploy``, ``pipeline.stages.build_1.spec.execution.steps.a``)."""
    inside = plan.inside_loops()
    if not inside and not any(n.strategy is not None for n in plan.nodes):
        return False
    dotted = "." in key
    for n in plan.nodes:
        if n.kind != "step" or (n.strategy is None and n.index not in inside):
            continue
        if not dotted:
            if n.strategy is not None and key.startswith(n.id + "_") and _POSTFIX.fullmatch(key[len(n.id) :]):
                return True
            continue
        pattern = _pattern(n)
        if pattern is not None and pattern.fullmatch(key):
            return True
    return False


_PATTERNS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # plan node → its pattern


def _pattern(step: Any) -> Any | None:
    """:func:`_iteration_pattern`, made once per plan node (kept while the plan lives)."""
    try:
        return _PATTERNS[step]
    except KeyError:
        pattern = _PATTERNS[step] = _iteration_pattern(step)
        return pattern


def _iteration_pattern(step: Any) -> Any | None:
    """The RE2 pattern of the FQNs a trace gives ``step`` inside its loops: each looped node's
    segment takes one of its postfixes (any ``_…`` when they are known only in a run), the
    step's own only optionally (its looped row has none)."""
    import re2

    loops, node = [], step
    while node is not None:
        if node.strategy is not None and node.kind != "parallel":
            loops.append(node)
        node = node.parent
    loops.reverse()
    parts, done = [], ""
    for looped in loops:
        parts.append(re.escape(looped.fqn[len(done) :]))
        postfix = "(?:_.+?)"
        if not runtime_values(looped.strategy):
            try:
                its = iterations(looped.strategy)
            except Exception:  # a strategy validation refuses; the generic form is enough here
                its = None
            if its is not None and len(its) <= _SHOWN:
                if not its:
                    return None  # no iteration: no FQN through this node
                postfix = "(?:" + "|".join(re.escape(it.postfix) for it in its) + ")"
        parts.append(postfix + ("?" if looped is step else ""))
        done = looped.fqn
    parts.append(re.escape(step.fqn[len(done) :]))
    return re2.compile("".join(parts))


def _glob(key: str) -> Any:
    """The compiled RE2 regex of a glob key (``fnmatch`` syntax): matching takes linear time.

    ``fnmatch.translate`` writes ``(?s:(?>.*?a)….*b)\\Z``: its atomic groups only keep
    Python's backtracking matcher fast and mean the same as plain groups, which RE2 (no
    backtracking at all) needs instead; ``\\Z`` is RE2's ``\\z`` (and ``fullmatch`` anchors).

    >>> bool(_glob("*.tests.steps.*").fullmatch("pipeline.stages.s.spec.execution.steps.tests.steps.unit"))
    True
    """
    import re2

    pattern = fnmatch.translate(key).replace("(?>", "(?:")
    return re2.compile(pattern.removesuffix("\\Z"))


def unknown_key_error(option: str, plan: Any, key: str) -> SimulationError:
    """The error for a key of ``option`` that matches no step of ``plan`` (with a suggestion)."""
    ids = list(dict.fromkeys(n.id for n in plan.nodes if n.kind == "step"))
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], ids, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    shown = ", ".join(ids[:12]) + (", …" if len(ids) > 12 else "")
    return SimulationError(
        f"{option}: no step of pipeline {plan.pipeline.id!r} matches {key!r} "
        f"(keys are step ids, FQNs or globs); {hint}{_iterations_hint(plan, key)}steps: {shown}"
    )


def _iterations_hint(plan: Any, key: str) -> str:
    """``the iterations of compile are compile_0_0, …; `` when ``key`` looks like an iteration of a
    looped step whose iterations are known before the run (R46)."""
    for n in plan.nodes:
        if n.kind != "step" or n.strategy is None or runtime_values(n.strategy):
            continue
        stem = n.fqn if "." in key else n.id
        if not key.startswith(stem + "_"):
            continue
        try:
            its = iterations(n.strategy)
        except Exception:
            return ""
        names = [n.id + it.postfix for it in its[:6]]
        more = ", …" if len(its) > 6 else ""
        return f"the iterations of {n.id!r} are {', '.join(names)}{more}; "
    return ""
