"""Typed steps that run for real: a registry of handlers by Harness step type, and ``ShellScript``.

Design notes
------------
A step loaded from Harness YAML has no Python body, only a ``type`` and a ``spec`` (data). In
``simulate()`` that is enough: the step takes its declared or default duration. ``run()`` needs
something to execute, so each step type that can run has a *handler*::

    def handler(ctx, spec) -> dict | None: ...
    nbp.register_step_type("Http", handler)

- ``ctx`` is the step's :class:`~notebook_pipelines.engine.context.StepContext` (``fqn``, ``attempt``,
  ``variables``, ``cancelled``, ``sleep()``, ``check()``); what the handler prints goes to the
  step's log in the trace;
- ``spec`` is the step's ``spec`` with every ``<+…>`` expression already resolved, as Harness
  resolves a step's parameters just before it starts (a value that is exactly one expression
  keeps its type). The scheduler resolves it on its own thread, like the step's inputs: a
  reference that cannot be resolved fails the step once, before any attempt, without its
  failure strategies (D13);
- the returned dict becomes the step's output variables (R44); raising fails the step
  (:class:`~notebook_pipelines.errors.StepError` chooses the Harness error type).

A handler may carry a ``check(spec) -> list[str]``: ``run()`` calls it on every step of that
type *before anything starts* and refuses the run (one ``DefinitionError``) if any check
complains, or if a body-less typed step has no handler at all. Untyped body-less steps keep
completing at once; a step with a Python body runs its body whatever its type.

``ShellScript`` is built in: ``spec.source.spec.script`` (``shell: Bash``, ``source.type:
Inline``) runs in ``bash`` in a new process group, with ``spec.environmentVariables`` in its
environment; its output (stdout and stderr, in order) streams into the step's log (bounded:
its head and tail, see :class:`~notebook_pipelines.engine.executors.capture.StepLog`);
``spec.outputVariables`` ``[{name, type, value}]`` export the shell variable named by ``value``
as the output variable ``name`` (read afterwards as
``<+…steps.STEP.output.outputVariables.NAME>``). Exit code ≠ 0 fails the step (error type
``Unknown``). A timeout or an abort kills the whole process group (SIGTERM, then SIGKILL after a
second): waiting is on events, never a polling loop. Scripts run on this machine, in the
current directory; a remote ``executionTarget`` is refused by the check.

**Values in a script are not quoted.** As in Harness, each ``<+…>`` in ``script`` is replaced by
its value, as text, before bash reads the script: a value such as ``$(touch X)`` or ``a; b`` runs
as shell code (``notebook-pipelines run p.yaml --var 'who=$(touch X)'`` runs ``touch X`` if the
script says ``echo <+pipeline.variables.who>``). To keep a value as data, pass it in
``spec.environmentVariables`` and quote the variable in the script — the value reaches bash in
its environment, never parsed::

    environmentVariables:
      - {name: WHO, type: String, value: <+pipeline.variables.who>}
    source: {type: Inline, spec: {script: 'echo "hello $WHO"'}}

>>> sorted(step_types())
['ShellScript', 'Wait']
>>> shell_script_check({"shell": "PowerShell", "source": {"type": "Inline", "spec": {"script": "dir"}}})
["shell 'PowerShell' is not supported: only Bash scripts run here"]
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DefinitionError, ExpressionError, Problem, StepError

__all__ = [
    "StepType",
    "call_handler",
    "check_runnable",
    "register_step_type",
    "resolve_spec",
    "run_shell_script",
    "run_wait",
    "shell_script_check",
    "step_type",
    "step_types",
    "unregister_step_type",
]

Handler = Callable[[Any, Any], "dict[str, Any] | None"]


@dataclass(frozen=True)
class StepType:
    """A registered step type: its Harness name, its handler and an optional pre-run check."""

    name: str
    handler: Handler
    check: Callable[[Any], list[str]] | None = None


_REGISTRY: dict[str, StepType] = {}
_LOCK = threading.Lock()


def register_step_type(
    name: str, handler: Handler | None = None, *, check: Callable[[Any], list[str]] | None = None
) -> Any:
    """Make steps of Harness type ``name`` runnable by ``run()`` with ``handler(ctx, spec)``.

    Registering a name again replaces its handler. Usable as a decorator:

    >>> @register_step_type("Echo")
    ... def echo(ctx, spec):
    ...     print(spec["text"])
    ...     return {"said": spec["text"]}
    >>> step_type("Echo").handler is echo
    True
    >>> unregister_step_type("Echo")

    Args:
        name: the step ``type`` as written in Harness YAML (``Http``, ``K8sRollingDeploy``…).
        handler: ``handler(ctx, spec) -> dict | None`` (see the module notes).
        check: optional ``check(spec) -> list[str]`` of problems found before a run starts
            (``handler.check`` is used when this is not given).

    Returns:
        ``handler`` (or, without one, a decorator that registers the function it decorates).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"a step type name is a non-empty string, got {name!r}")
    if handler is None:
        return lambda fn: register_step_type(name, fn, check=check)
    if not callable(handler):
        raise TypeError(f"the handler for {name!r} must be callable handler(ctx, spec), got {handler!r}")
    with _LOCK:
        _REGISTRY[name] = StepType(name, handler, check or getattr(handler, "check", None))
    return handler


def unregister_step_type(name: str) -> None:
    """Forget the handler of ``name`` (its steps can then only be simulated)."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def step_type(name: Any) -> StepType | None:
    """The registered :class:`StepType` for ``name``, or ``None``."""
    return _REGISTRY.get(name) if isinstance(name, str) else None


def step_types() -> dict[str, StepType]:
    """A copy of the registry: type name → :class:`StepType`."""
    with _LOCK:
        return dict(_REGISTRY)


# -- before a run ---------------------------------------------------------------------------------
def check_runnable(plan: Any) -> None:
    """Refuse (``DefinitionError``) a plan whose body-less typed steps cannot run for real.

    Called by ``run()`` before anything starts; ``simulate()`` does not need handlers. A
    ``Barrier`` step needs none either: it is flow control, the scheduler waits there (R56).
    """
    problems: list[Problem] = []
    for node in plan.nodes:
        if node.kind != "step" or node.body is not None or node.barrier is not None:
            continue  # a Barrier step is flow control: the scheduler itself waits there (R56)
        extra = getattr(node.source, "extra", None) or {}
        if "template" in extra:
            ref = (
                extra["template"].get("templateRef")
                if isinstance(extra["template"], dict)
                else extra["template"]
            )
            problems.append(
                Problem(
                    node.fqn,
                    "type",
                    f"the step is a reference to template {ref!r}, which is not resolved here",
                    "simulate the pipeline instead (p.simulate()), or replace the template by its steps",
                )
            )
            continue
        if node.type is None:
            continue
        registered = step_type(node.type)
        if registered is None:
            problems.append(
                Problem(
                    node.fqn,
                    "type",
                    f"no handler for step type {node.type!r}: such a step can only be simulated",
                    f"register one with nbp.register_step_type({node.type!r}, handler) where "
                    "handler(ctx, spec) returns the output variables, give the step a Python body "
                    "(run=...), or use p.simulate()",
                )
            )
            continue
        if registered.check is not None:
            for message in _checked(registered, node):
                problems.append(Problem(node.fqn, "type", message, f"fix the step's spec ({node.type})"))
    if problems:
        raise DefinitionError(problems)


def _checked(registered: StepType, node: Any) -> list[str]:
    """What the check of ``registered`` says of ``node``'s spec: its messages as texts; a check
    that raises, or gives something else than texts, is itself a problem of the step."""
    from ..definition.evaluation import raised
    from ..definition.limits import short

    check = registered.check
    assert check is not None
    name = getattr(check, "__qualname__", None)
    name = repr(name if isinstance(name, str) else type(check).__name__)
    try:
        found = check(node.spec or {})
        messages = list(found) if not isinstance(found, str) else [found]
    except Exception as err:
        return [f"the check {name} of step type {node.type!r} raised {raised(err)}; fix the check"]
    return [m if isinstance(m, str) else f"the check {name} gave {short(m)}, not a text" for m in messages]


# -- during a run ---------------------------------------------------------------------------------
def resolve_spec(
    scheduler: Any, node: Any, value: Any, where: str = "spec", budget: list[int] | None = None
) -> Any:
    """``value`` with every string's ``<+…>`` expressions resolved for ``node`` (deeply); the
    texts built share one budget of ``expressions.MAX_VALUE`` characters.

    Raises:
        ExpressionError: naming the spec key (and the line, in a multi-line text) and showing
            the reference that cannot be resolved with a caret under it.
    """
    if budget is None:
        from ..definition.expressions import MAX_VALUE

        budget = [MAX_VALUE]
    if isinstance(value, str):
        if "<+" not in value:
            return value
        if scheduler is None:
            raise StepError(f"{node.fqn}: cannot resolve {where} {value!r} outside a run", "Unknown")
        from ..definition.references import render_template

        try:
            return render_template(scheduler, node, value, budget)
        except ExpressionError as err:
            raise _located(err, node.fqn, where) from None
    if isinstance(value, dict):
        return {k: resolve_spec(scheduler, node, v, f"{where}.{k}", budget) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_spec(scheduler, node, v, f"{where}[{i}]", budget) for i, v in enumerate(value)]
    return value


def _located(err: ExpressionError, fqn: str, where: str) -> ExpressionError:
    """The error of an expression inside a spec text, showing only the line it sits on."""
    text, position = err.expression, err.position
    if position is None or "\n" not in text:
        return ExpressionError(f"{where}: {err.reason}", text, position, err.fqn or fqn)
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    line = text.count("\n", 0, position) + 1
    snippet = text[start : end if end != -1 else len(text)]
    return ExpressionError(f"{where} (line {line}): {err.reason}", snippet, position - start, err.fqn or fqn)


def call_handler(node: Any, ctx: Any, spec: Any = None) -> Any:
    """Run the registered handler of a body-less typed step (on a worker thread).

    ``spec`` is the step's spec as the scheduler resolved it, on its own thread, before the step
    started (an unresolvable ``<+…>`` fails the step there, once, like its inputs: D13). Without
    it, ``node.spec`` is used as it is, and may then hold no ``<+…>``.
    """
    registered = step_type(node.type)
    if registered is None:
        raise StepError(
            f"no handler for step type {node.type!r}: nbp.register_step_type({node.type!r}, handler), "
            "or simulate the pipeline",
            "Unknown",
        )
    if spec is None:
        spec = resolve_spec(None, node, node.spec or {})
    return registered.handler(ctx, spec)


# -- ShellScript ----------------------------------------------------------------------------------
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MARK = "__NBP_OUTPUTS"

# Runs the user's script with `.` so that an `exit` anywhere still runs the EXIT trap that
# writes the requested shell variables as NUL-separated name/value pairs.
_WRAPPER = """__nbp_export() {{
  for __nbp_name in {names}; do
    if [ -n "${{!__nbp_name+set}}" ]; then printf '%s\\0%s\\0' "$__nbp_name" "${{!__nbp_name}}"; fi
  done > "${mark}"
}}
trap __nbp_export EXIT
. "$__NBP_SCRIPT"
"""


def _script(spec: Any) -> Any:
    source = spec.get("source") if isinstance(spec, dict) else None
    inner = source.get("spec") if isinstance(source, dict) else None
    return inner.get("script") if isinstance(inner, dict) else None


def _pairs(entries: Any, what: str) -> tuple[list[tuple[str, Any, str]], list[str]]:
    """(name, value, type) of ``environmentVariables`` / ``outputVariables``, and problems."""
    out: list[tuple[str, Any, str]] = []
    problems: list[str] = []
    if entries in (None, ""):
        return out, problems
    if not isinstance(entries, list):
        return out, [f"{what} must be a list of {{name, type, value}}, got {entries!r}"]
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(f"each of {what} needs a name: {entry!r}")
            continue
        out.append((entry["name"], entry.get("value"), entry.get("type") or "String"))
    return out, problems


def shell_script_check(spec: Any) -> list[str]:
    """Problems that keep a ``ShellScript`` spec from running here (empty when it can run)."""
    if not isinstance(spec, dict):
        return [f"the spec must be a mapping, got {spec!r}"]
    problems = []
    shell = spec.get("shell", "Bash")
    if shell != "Bash":
        problems.append(f"shell {shell!r} is not supported: only Bash scripts run here")
    source = spec.get("source")
    kind = source.get("type", "Inline") if isinstance(source, dict) else None
    if kind != "Inline":
        problems.append(f"source type {kind!r} is not supported: write the script inline (type: Inline)")
    elif _script(spec) is not None and not isinstance(_script(spec), str):
        kind = type(_script(spec)).__name__
        problems.append(f'the script is a {kind}, not text: quote it in YAML (script: "yes")')
    elif not isinstance(_script(spec), str) or not _script(spec).strip():
        problems.append("the script is empty: set spec.source.spec.script")
    target = spec.get("executionTarget")
    if spec.get("onDelegate") is False and isinstance(target, dict) and target.get("host"):
        problems.append(f"the script targets the remote host {target['host']!r}; only local scripts run here")
    envs, bad = _pairs(spec.get("environmentVariables"), "environmentVariables")
    outs, bad_out = _pairs(spec.get("outputVariables"), "outputVariables")
    problems += bad + bad_out
    for name, _value, _type in envs:
        if not _NAME.match(name):
            problems.append(f"environment variable name {name!r} is not a shell name")
    for name, value, _type in outs:
        var = value if isinstance(value, str) and value else name
        if not _NAME.match(var) or var.startswith("__nbp"):
            problems.append(f"output variable {name!r} reads {var!r}, which is not a shell variable name")
    return problems


#: the most characters of a script's output read at once (a line longer than this comes in pieces)
_CHUNK = 65_536


def _run_script(wrapper: str, env: dict[str, str], stop: threading.Event) -> int:
    """Run the wrapped script until it ends (or ``stop`` is set: then kill it); its exit code.

    The clean-up is in nested ``finally`` blocks, so a stop signal landing in one part of it
    (``StepCancelled`` raised into the worker thread) does not skip the others: the script is
    always told to end and its output pipe closed; the reaper thread reaps it (no zombie).
    """
    proc = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-c", wrapper, "bash"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    watch = _Watch(proc, stop)
    try:
        assert proc.stdout is not None
        read = proc.stdout.readline
        # a line at a time, at most _CHUNK characters of one: a script printing without a line
        # break is passed on in pieces, so memory stays bounded (the step's log is bounded too)
        while line := read(_CHUNK):  # ends when the script and everything it started are gone
            sys.stdout.write(line)
        watch.ended.wait()  # a script may close its output before it ends
    finally:
        try:
            stop.set()  # an error here, or a stop signal: end the script (nothing to do if it ended)
            watch.ended.wait()
        finally:
            try:
                stop.set()  # again, if a stop signal landing above cut that short
                watch.ended.wait()
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()
    return proc.wait()  # the reaper has reaped it, or is about to


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_shell_script(ctx: Any, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The ``ShellScript`` handler: run the (resolved) Bash script; return its output variables.

    The expressions in the script were replaced by their values unquoted (as Harness does);
    ``environmentVariables`` reach the script as environment variables, the quoted form (see
    the module notes)."""
    problems = shell_script_check(spec)
    if problems:
        raise StepError("; ".join(problems), "Unknown")
    from .context import StepCancelled

    script = _text(_script(spec))
    envs, _ = _pairs(spec.get("environmentVariables"), "environmentVariables")
    outs, _ = _pairs(spec.get("outputVariables"), "outputVariables")
    wanted = [(name, value if isinstance(value, str) and value else name, kind) for name, value, kind in outs]
    env = dict(os.environ)
    env.update({name: _text(value) for name, value, _kind in envs})
    with tempfile.TemporaryDirectory(prefix="nbp-shell-") as tmp:
        script_path, out_path = Path(tmp, "script.sh"), Path(tmp, "outputs")
        script_path.write_text(script, encoding="utf-8")
        env["__NBP_SCRIPT"], env[_MARK] = str(script_path), str(out_path)
        names = " ".join(sorted({var for _n, var, _k in wanted})) or "__nbp_none"
        wrapper = _WRAPPER.format(names=names, mark=_MARK)
        # this script's own stop event: ctx.cancel() sets it (through ctx._watchers) and so wakes
        # the guard that kills the process group; the script's end sets it too, but that is
        # private to this call (a later script of the same step, or ctx.sleep(), is not stopped)
        stop = threading.Event()
        ctx._watchers.append(stop)
        try:
            if ctx.cancelled:  # told to stop before the event was seen by cancel()
                raise StepCancelled(f"{ctx.fqn} was told to stop")
            code = _run_script(wrapper, env, stop)
        finally:
            ctx._watchers.remove(stop)
        if ctx.cancelled:
            raise StepCancelled(f"{ctx.fqn} was told to stop")
        if code != 0:
            raise StepError(f"the script exited with code {code}", "Unknown")
        values = _read_outputs(out_path)
    exported = {}
    for name, var, _kind in wanted:
        if var not in values:
            print(f"[notebook-pipelines] output variable {name!r}: shell variable {var!r} is not set")
        exported[name] = values.get(var)
    return exported or None


class _Watch:
    """Two helper threads per script: one notices its end, one kills it when told to stop.

    The script's process-group id is its pid, which stays reserved until the script is reaped.
    The reaper first only *observes* the end (``waitid`` with ``WNOWAIT``), kills what the script
    left in its group and marks it ended, then reaps it (``proc.wait()``): every ``killpg`` below
    happens before that, while the id cannot belong to anyone else. ``lock`` orders "has it
    ended?" against the kills. Reaping here, not in the worker, leaves no zombie even when the
    worker's clean-up is cut short by a stop signal.
    """

    def __init__(self, proc: subprocess.Popen[str], stop: threading.Event):
        self.proc, self.stop = proc, stop
        self.ended, self.lock = threading.Event(), threading.Lock()
        threading.Thread(target=self._reap, name=f"nbp-reap-{proc.pid}", daemon=True).start()
        threading.Thread(target=self._guard, name=f"nbp-guard-{proc.pid}", daemon=True).start()

    def _kill(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self) -> None:
        if hasattr(os, "waitid"):
            try:
                os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
        else:  # pragma: no cover - platforms without waitid
            self.proc.wait()
        with self.lock:
            self._kill(signal.SIGKILL)  # what the script left running would hold its output open
            self.ended.set()
        self.proc.wait()  # reap it: no more kills can come (ended is set)
        self.stop.set()  # wakes the guard (this script's own event: nothing else is stopped)

    def _guard(self) -> None:
        self.stop.wait()
        with self.lock:
            if self.ended.is_set():
                return
            self._kill(signal.SIGTERM)  # told to stop (timeout, abort) while the script runs
        if not self.ended.wait(1.0):
            with self.lock:
                if not self.ended.is_set():
                    self._kill(signal.SIGKILL)


def _read_outputs(path: Path) -> dict[str, str]:
    try:
        data = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    parts = data.split("\0")
    return {parts[i]: parts[i + 1] for i in range(0, len(parts) - 1, 2)}


run_shell_script.check = shell_script_check  # type: ignore[attr-defined]
register_step_type("ShellScript", run_shell_script)


# -- Wait ------------------------------------------------------------------------------------------
def _wait_seconds(spec: Any) -> float | None:
    from ..definition.durations import parse_duration

    value = spec.get("duration") if isinstance(spec, dict) else None
    return parse_duration(value) if value is not None else None


def wait_check(spec: Any) -> list[str]:
    """A ``Wait`` step needs ``spec.duration`` (a Harness duration such as ``10m``)."""
    try:
        seconds = _wait_seconds(spec)
    except Exception as err:  # a duration that cannot be read
        return [f"spec.duration: {err}"]
    return [] if seconds is not None else ["a Wait step needs spec.duration (e.g. 10m)"]


def run_wait(ctx: Any, spec: Any) -> None:
    """Harness's ``Wait`` step: waits ``spec.duration`` (its duration in simulation too).

    The wait wakes when the step is told to stop (timeout, abort, Ctrl-C).
    """
    seconds = _wait_seconds(spec) or 0.0
    ctx.sleep(seconds)


run_wait.check = wait_check  # type: ignore[attr-defined]
register_step_type("Wait", run_wait)
