"""``trace.pipeline``: the pandas accessor of trace DataFrames, and how it gets registered.

Every trace (``run()``, ``simulate()``, ``nbp.read_trace``, a slice of one) answers
``trace.pipeline.critical_path()``, ``.slack()``, ``.concurrency()``, ``.summary()``,
``.what_if(...)``, ``.gantt()``, ``.to_perfetto(path)``, ``.save(path)``, ``.compare(other)``,
``.table()`` and, for several runs concatenated, ``.step_stats()``. The accessor is a
front-end: thin methods over :mod:`~notebook_pipelines.analysis.timing`,
:mod:`~notebook_pipelines.analysis.whatif`, :mod:`~notebook_pipelines.views.gantt`,
:mod:`~notebook_pipelines.formats.perfetto` and :mod:`~notebook_pipelines.formats.traces`.

Registration without importing pandas
-------------------------------------
``import notebook_pipelines`` must not import pandas (import time is budgeted), yet the
accessor must exist as soon as a trace does. :func:`install` (called by the package's
``__init__``) registers the accessor at once if pandas is already imported; otherwise it puts
a small finder first on ``sys.meta_path`` that does nothing but wait for ``import pandas``
(by anyone: the engine building its first trace, or the user): it wraps pandas' own loader,
lets it run, restores it, removes itself and registers the accessor. The same pattern as
``wrapt``'s post-import hooks; no other import is touched.

>>> import pandas as pd
>>> import notebook_pipelines as nbp
>>> pd.DataFrame.pipeline is PipelineAccessor
True
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import pandas as pd

__all__ = ["NAME", "PipelineAccessor", "install", "register"]

#: the accessor's name: ``trace.pipeline``
NAME = "pipeline"


class PipelineAccessor:
    """Timing analysis of a trace DataFrame: ``trace.pipeline.<method>()``.

    Methods that read one run refuse a frame of several runs with a message saying how to pick
    one; over many runs (a history, ``nbp.read_history``, or traces concatenated) there are
    :meth:`step_stats`, :meth:`criticality`, :meth:`trend`, :meth:`plot_trend`,
    :meth:`regressions`, :meth:`flaky`, ``compare(before, after)`` and ``gantt(summary=True)``.
    """

    def __init__(self, frame: pd.DataFrame):
        self._frame = frame

    def _trace(self, what: str, one_run: bool = True) -> pd.DataFrame:
        from ..analysis.timing import check_trace

        check_trace(self._frame, f"trace.pipeline.{what}", one_run=one_run)
        return self._frame

    def critical_path(self) -> pd.DataFrame:
        """The step executions that determined the makespan, in time order (trace rows);
        see :func:`~notebook_pipelines.analysis.timing.critical_path`."""
        from ..analysis.timing import critical_path

        return critical_path(self._trace("critical_path()"))

    def slack(self) -> pd.DataFrame:
        """One row per step execution with ``slack_s``: how long it could grow without
        delaying the end; see :func:`~notebook_pipelines.analysis.timing.slack`."""
        from ..analysis.timing import slack

        return slack(self._trace("slack()"))

    def concurrency(self, by: str | None = None) -> pd.DataFrame:
        """Steps running over time (``by=None``), or the parallel efficiency and idle time of
        each ``"block"``, ``"step_group"``, ``"stage"`` or the ``"pipeline"``; see
        :func:`~notebook_pipelines.analysis.timing.concurrency`."""
        from ..analysis.timing import concurrency

        return concurrency(self._trace("concurrency()"), by)

    def summary(self) -> pd.DataFrame:
        """Per stage, step group and parallel block: span, busy time, speed-up, longest step;
        see :func:`~notebook_pipelines.analysis.timing.summary`."""
        from ..analysis.timing import summary

        return summary(self._trace("summary()"))

    def what_if(
        self,
        durations: Any = None,
        strategy: Any = None,
        *,
        pipeline: Any = None,
        **simulate_options: Any,
    ) -> pd.DataFrame:
        """Re-simulate this run's pipeline with its measured durations, changed as asked →
        a compare table (makespan, change, new critical path); see
        :func:`~notebook_pipelines.analysis.whatif.what_if`. The pipeline is found by the
        run's id (the engine keeps the plans of recent runs); pass ``pipeline=`` for a trace
        read from a file. On a history (many runs): Monte Carlo before and after the change,
        p50 and p95 (``design=``, ``scale=``, ``runs=``; see ``what_if``)."""
        from ..analysis.whatif import what_if

        many = self._frame["run_id"].nunique() > 1 if "run_id" in self._frame.columns else False
        frame = self._frame if many else self._trace("what_if()")  # a history: read by its columns
        return what_if(frame, durations, strategy, pipeline=pipeline, **simulate_options)

    def gantt(self, summary: bool = False, **options: Any) -> Any:
        """The Gantt chart (a matplotlib figure that shows itself in a notebook); see
        :func:`~notebook_pipelines.views.gantt.gantt` for the options. ``summary=True`` on a
        history: the median run, with p95 whiskers, coloured by criticality; see
        :func:`~notebook_pipelines.views.history.summary_gantt`."""
        if summary:
            from ..views.history import summary_gantt

            return summary_gantt(self._frame, **options)
        from ..views.gantt import gantt

        return gantt(self._trace("gantt()"), **options)

    def to_perfetto(self, path: str | Path) -> Path:
        """Write Chrome trace-event JSON that Perfetto and ``chrome://tracing`` open; see
        :func:`~notebook_pipelines.formats.perfetto.to_perfetto`."""
        from ..formats.perfetto import to_perfetto

        return to_perfetto(self._trace("to_perfetto()"), path)

    def save(self, path: str | Path) -> Path:
        """Write this trace (one run or several) to ``path`` as CSV, JSON or Parquet, by its
        suffix; ``nbp.read_trace(path)`` reads it back equal. See
        :func:`~notebook_pipelines.formats.traces.write_trace` for the format (JSON cells for
        dicts, spreadsheet formulas neutralised in CSV).

        >>> import os, tempfile
        >>> import notebook_pipelines as nbp
        >>> trace = nbp.Pipeline("p", stages=[nbp.Stage("s", items=[nbp.Step("a")])]).simulate()
        >>> path = trace.pipeline.save(os.path.join(tempfile.mkdtemp(), "run.parquet"))
        >>> nbp.read_trace(path).equals(trace)
        True
        """
        from ..formats.traces import write_trace

        return write_trace(self._frame, path)

    def compare(self, other: Any, after: Any = None, *, iterations: bool = False) -> pd.DataFrame:
        """``compare(other)``: node by node, how long each took in this run and in ``other``
        (another run's trace); see :func:`~notebook_pipelines.analysis.timing.compare_traces`.

        ``compare(before, after)`` on a history: two slices of it (run ids, ``slice(since, until)``
        of dates, a branch name, a dict or DataFrames) side by side — percentiles, criticality and
        which nodes explain the change in makespan; see
        :func:`~notebook_pipelines.analysis.history.compare`."""
        if after is not None:
            from ..analysis.history import compare

            return compare(self._frame, other, after, iterations=iterations)
        from ..analysis.timing import compare_traces

        return compare_traces(self._trace("compare()"), other)

    def table(self, columns: list[str] | tuple[str, ...] | None = None) -> Any:
        """The trace as a table a person reads (one marker for none, logs and long texts
        shown whole, wrapped); the DataFrame is unchanged (``.frame``); see
        :class:`~notebook_pipelines.views.tables.TraceTable`."""
        from ..views.tables import TraceTable

        return TraceTable(self._frame, columns)

    def step_stats(self, iterations: bool = False) -> pd.DataFrame:
        """Over many runs (a history, or traces concatenated): per node, its duration
        percentiles, queue, failure, retry and skip rates, and how it drives the makespan; see
        :func:`~notebook_pipelines.analysis.history.step_stats`."""
        from ..analysis.history import step_stats

        return step_stats(self._frame, iterations)

    def criticality(self, iterations: bool = False) -> pd.DataFrame:
        """Over many runs: per node, the share of runs whose critical path goes through it, its
        seconds on the path and its share of the median makespan; see
        :func:`~notebook_pipelines.analysis.history.criticality`."""
        from ..analysis.history import criticality

        return criticality(self._frame, iterations)

    def trend(self, nodes: Any = None, freq: str = "D", iterations: bool = False) -> pd.DataFrame:
        """Over many runs: each node's duration percentiles per period (``freq``); see
        :func:`~notebook_pipelines.analysis.history.trend`; :meth:`plot_trend` draws them."""
        from ..analysis.history import trend

        return trend(self._frame, nodes, freq, iterations)

    def plot_trend(self, nodes: Any = None, freq: str = "D", **options: Any) -> Any:
        """Small multiples of :meth:`trend`: a panel per node, p50 with the p90–p95 band; see
        :func:`~notebook_pipelines.views.history.trend_figure`."""
        from ..views.history import trend_figure

        return trend_figure(self._frame, nodes, freq, **options)

    def regressions(self, window: int = 20, **options: Any) -> pd.DataFrame:
        """Over many runs: shifts in a node's duration (a rank test and a change point), ranked
        by their effect on the makespan; see :func:`~notebook_pipelines.analysis.history.regressions`."""
        from ..analysis.history import regressions

        return regressions(self._frame, window, **options)

    def flaky(self, iterations: bool = False) -> pd.DataFrame:
        """Over many runs: nodes whose outcome differs on the same commit, and retried-then-passed
        counts; see :func:`~notebook_pipelines.analysis.history.flaky`."""
        from ..analysis.history import flaky

        return flaky(self._frame, iterations)

    def __repr__(self) -> str:
        frame = self._frame
        runs = frame["run_id"].dropna().unique() if "run_id" in frame.columns else []
        what = f"run {str(runs[0])!r}" if len(runs) == 1 else f"{len(runs)} runs"
        methods = (
            "critical_path, slack, concurrency, summary, what_if, gantt, to_perfetto, save, compare, "
            "step_stats, table"
        )
        if len(runs) > 1:
            methods = (
                "step_stats, criticality, trend, plot_trend, regressions, flaky, compare(before, after), "
                "gantt(summary=True), save"
            )
        return f"<trace.pipeline: {what}, {len(frame)} rows; {methods}>"


def register() -> None:
    """Register :class:`PipelineAccessor` as ``DataFrame.pipeline`` (once; pandas must be importable)."""
    import pandas as pd

    if getattr(pd.DataFrame, NAME, None) is PipelineAccessor:
        return
    pd.api.extensions.register_dataframe_accessor(NAME)(PipelineAccessor)


class _Loader(importlib.abc.Loader):
    """pandas' own loader, and the registration right after it has run."""

    def __init__(self, loader: Any, hook: _PandasHook):
        self.loader, self.hook = loader, hook

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.hook.remove()
        try:
            register()
        except Exception as error:  # pragma: no cover - a broken pandas must still import
            warnings.warn(f"trace.pipeline is not available: {error}", stacklevel=2)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _PandasHook(importlib.abc.MetaPathFinder):
    """Waits on ``sys.meta_path`` for ``import pandas``; touches no other import."""

    def __init__(self) -> None:
        self.busy = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "pandas" or self.busy:
            return None
        self.busy = True  # the import lock of 'pandas' is held: no other thread gets here now
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, self)
        return spec

    def remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def install() -> None:
    """Make ``DataFrame.pipeline`` exist whenever pandas is imported (now, if it already is)."""
    if any(isinstance(finder, _PandasHook) for finder in sys.meta_path):
        return
    pandas = sys.modules.get("pandas")
    if pandas is not None and hasattr(pandas, "api"):
        register()
        return
    sys.meta_path.insert(0, _PandasHook())
