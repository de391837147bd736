"""notebook-pipelines: design, run, simulate and analyse pipelines of stages, steps and step groups.

A tour (each line runs as written):

>>> import notebook_pipelines as nbp
>>> p = nbp.Pipeline("release")
>>> with p.stage("build") as build:
...     _ = build.step("checkout", duration="5s")
...     with build.step_group("tests") as tests:
...         with tests.parallel():
...             _ = tests.step("unit", duration="30s")
...             _ = tests.step("lint", duration="10s")
...         _ = tests.step("e2e", duration="1m")
>>> trace = p.simulate(run_id="doc")
>>> print(trace.loc[trace.kind == "step", ["step", "status", "start_s", "end_s"]].to_string(index=False))
    step  status  start_s  end_s
checkout Success      0.0    5.0
    unit Success      5.0   35.0
    lint Success      5.0   15.0
     e2e Success     35.0   95.0

``p`` as the last expression of a cell shows the Graphviz picture; ``p.run()`` runs the
bodies on threads in the kernel; ``p.render(trace)`` colours the picture by a run.
"""

from __future__ import annotations

from typing import Any

from . import errors as _errors
from ._version import __version__ as __version__
from .definition import failure as _failure
from .definition.durations import format_duration, parse_duration
from .definition.failure import *  # noqa: F403 - When, OnFailure and the actions (its __all__)
from .definition.looping import Matrix, Parallelism, Repeat
from .definition.model import VERBS, Parallel, Pipeline, Stage, Step, StepGroup
from .errors import *  # noqa: F403 - every public error and warning (errors.__all__ is their list)
from .frontends.accessor import install as _install_accessor

# The verbs of Pipeline live above the definition layer; the facade wires them in.
VERBS.update(
    validate="notebook_pipelines.definition.plan:validate",
    plan="notebook_pipelines.definition.plan:compile_plan",
    run="notebook_pipelines.views.controller:run",
    start="notebook_pipelines.views.controller:start",
    simulate="notebook_pipelines.engine.simulation:simulate",
    to_yaml="notebook_pipelines.formats.yaml_io:dump_yaml",
    render="notebook_pipelines.views.rendering:render",
    mimebundle="notebook_pipelines.views.rendering:mimebundle",
    suggestions_html="notebook_pipelines.views.layout:suggestions_html",
)

# Heavier parts (pandas, graphviz, the engine) load on first use.
_LAZY = {
    "run": ("views.controller", "run"),
    "start": ("views.controller", "start"),
    "RunHandle": ("views.controller", "RunHandle"),
    "replay": ("views.replay", "replay"),
    "explore": ("views.explore", "explore"),
    "last_trace": ("engine.running", "last_trace"),
    "StepContext": ("engine.context", "StepContext"),
    "InterventionRequest": ("engine.interventions", "InterventionRequest"),
    "simulate": ("engine.simulation", "simulate"),
    "compare": ("analysis.whatif", "compare"),
    "monte_carlo": ("analysis.montecarlo", "monte_carlo"),
    "critical_path": ("analysis.whatif", "critical_path"),
    "summarize": ("analysis.distribution", "summarize"),
    "distribution": ("analysis.distribution", "distribution"),
    "render": ("views.rendering", "render"),
    "validate": ("definition.plan", "validate"),
    "compile_plan": ("definition.plan", "compile_plan"),
    "load_yaml": ("formats.yaml_io", "load_yaml"),
    "register_step_type": ("engine.steptypes", "register_step_type"),
    "read_trace": ("formats.traces", "read_trace"),
    "COLUMNS": ("engine.trace", "COLUMNS"),
    "STATUSES": ("engine.trace", "STATUSES"),
    "DaskExecutor": ("cluster.dask", "DaskExecutor"),
    "suggest_layout": ("analysis.layout", "suggest_layout"),
    "puzzle": ("course.puzzles", "puzzle"),
    "check": ("course.exercises", "check"),
    "load_harness_execution": ("formats.harness_executions", "load_harness_execution"),
    "fetch_harness_execution": ("formats.harness_executions", "fetch_harness_execution"),
    "pipeline_from_execution": ("formats.harness_executions", "pipeline_from_execution"),
    "load_github_run": ("formats.github", "load_github_run"),
    "load_gitlab_pipeline": ("formats.gitlab", "load_gitlab_pipeline"),
    "fetch_github_history": ("formats.history_fetch", "fetch_github_history"),
    "fetch_gitlab_history": ("formats.history_fetch", "fetch_gitlab_history"),
    "fetch_harness_history": ("formats.history_fetch", "fetch_harness_history"),
    "read_history": ("formats.history_store", "read_history"),
    "pipeline_from_history": ("formats.history_tools", "pipeline_from_history"),
    "load_harness_insights": ("formats.history_tools", "load_harness_insights"),
}


# ``trace.pipeline`` on every trace: registered when pandas is imported, which this import
# does not do (see frontends/accessor.py).
_install_accessor()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'notebook_pipelines' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext notebook_pipelines``: the ``%pipeline``, ``%stage``, ``%step_group`` and ``%%step``
    magics (IPython is imported only here, not when the package is imported)."""
    from .frontends.magics import load_ipython_extension as load

    load(ipython)


def __dir__() -> list[str]:
    # the public names only: no imported helpers (``Any``, ``annotations``) nor private modules
    return sorted({*__all__, "__version__", "load_ipython_extension"})


__all__ = [  # noqa: RUF022 - grouped by layer, not sorted
    # -- the definition
    "Pipeline",
    "Stage",
    "StepGroup",
    "Step",
    "Parallel",
]
# -- When, OnFailure and the failure-strategy actions: listed once, in definition/failure.py
__all__ += _failure.__all__
__all__ += [  # noqa: RUF022 - grouped by layer, not sorted
    "Matrix",
    "Parallelism",
    "Repeat",
    "compile_plan",
    "validate",
    "format_duration",
    "parse_duration",
    # -- running and simulating
    "run",
    "start",
    "RunHandle",
    "simulate",
    "StepContext",
    "InterventionRequest",
    "last_trace",
    "register_step_type",
    "DaskExecutor",
    "COLUMNS",
    "STATUSES",
    # -- analysis
    "compare",
    "monte_carlo",
    "critical_path",
    "summarize",
    "distribution",
    "suggest_layout",
    # -- formats (files and services in, traces and pipelines out)
    "load_yaml",
    "read_trace",
    "load_harness_execution",
    "fetch_harness_execution",
    "pipeline_from_execution",
    "load_github_run",
    "load_gitlab_pipeline",
    "fetch_github_history",
    "fetch_gitlab_history",
    "fetch_harness_history",
    "read_history",
    "pipeline_from_history",
    "load_harness_insights",
    # -- views (and the course's puzzles)
    "render",
    "replay",
    "explore",
    "puzzle",
    "check",
]
# -- errors and warnings: all in errors.py, listed once there
__all__ += _errors.__all__
