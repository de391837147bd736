"""Real Harness runs as traces: an execution's node graph → the trace DataFrame (issue 15).

Harness shows one run in its UI but exports no node timings. Its execution-details endpoint
(``GET /pipeline/api/pipelines/execution/v2/{planExecutionId}?renderFullBottomGraph=true``)
returns the whole run as a node graph; :func:`load_harness_execution` turns that JSON into the
same trace DataFrame that ``run()`` and ``simulate()`` return, so ``trace.pipeline``
(critical path, slack, Gantt, what-if), ``p.render(trace)`` and every notebook work on real
data. :func:`pipeline_from_execution` rebuilds the pipeline's structure from the trace (for the
coloured picture and for re-simulating on the measured durations); :func:`fetch_harness_execution`
calls the API (``httpx``, the ``[harness]`` extra) and loads what it saved.

Modules: this one is the public face; :mod:`.harness_json` reads the JSON (bounded, its shape
checked before parsing), :mod:`.harness_graph` checks and walks the node graph into rows,
:mod:`.harness_frame` makes the trace DataFrame (:func:`load_harness_execution`),
:mod:`.harness_pipeline` rebuilds the pipeline and :mod:`.harness_fetch` calls the API.

How the graph is read (see ``/work/shared/HARNESS_EXECUTIONS.md`` for the shapes)
--------------------------------------------------------------------------------
``executionGraph`` holds ``rootNodeId``, ``nodeMap`` (runtime uuid → node) and
``nodeAdjacencyListMap`` (uuid → ``children``: what is nested inside, ``nextIds``: what
follows). It is walked iteratively (an explicit stack: no recursion limit on deep graphs) in
display order: a node, its children, then its nextIds. Before the walk the graph is checked:
every id it names must be in ``nodeMap`` and no chain of children/nextIds may come back to a
node (a cycle) — each refusal names the node.

- Rows: one per stage, step group and step (``kind`` from ``stepType`` and ``baseFqn``), one
  for the pipeline (the ``PIPELINE_SECTION`` node, or the execution summary), and one for each
  looped node (a ``STRATEGY`` wrapper: ``fqn`` = its path + identifier, ``iteration`` NA), so
  the iterations' rows have their looped node as ``parent`` exactly as in a run's trace (R46).
  Other structural nodes (stages/execution sections, service and infrastructure sections,
  ``NG_FORK`` forks, rollback chains) give no row: they set ``block`` (the items of a fork,
  or several ``children``/``nextIds`` of one node — the older shape without a fork node —
  share one block), ``phase`` (``rollback`` inside a rollback chain or a ``…(Rollback)``
  section) and ``iteration``.
- ``fqn`` is the node's ``baseFqn``; ``start``/``end`` come from ``startTs``/``endTs``
  (epoch ms, UTC), ``start_s``/``end_s`` are seconds from the pipeline's start; ``worker`` is
  the delegate's name; ``error`` is ``failureInfo.message`` and ``error_type`` the first
  ``failureInfo.failureTypeList`` entry in the names of R16 (``EXPIRED`` → ``Timeout``).
- ``attempt`` = 1 + the ``RETRY`` entries of ``interruptHistories``. Harness keeps only the
  last attempt in the graph; an earlier attempt gets a row when its node JSON (from
  ``getExecutionNode``, keyed by the ``retryInterruptConfig.retryId``) is passed in
  ``attempts=``.
- ``iteration`` is ``strategyMetadata.currentiteration`` (keys looked up case-insensitively).
- Stages that never started are only in ``pipelineExecutionSummary.layoutNodeMap``: they get
  ``NotStarted`` rows with attempt 0 (D6), in layout order.
- Statuses are mapped to the trace's names (``STATUS_MAP``: waiting states → ``Running`` with
  no end, queued ones → ``Queued``). An unknown status is kept verbatim, with a warning: the
  ``status`` column's categories are then ``STATUSES`` followed by the unknown names, so
  filtering and grouping keep working and nothing is silently renamed.
- Extra columns after the schema's: ``uuid`` (the node execution id), ``setupId`` (the plan
  node id, shared by iterations and attempts) and ``stepType``.
"""

from __future__ import annotations

from ..errors import HarnessExecutionError, HarnessStatusWarning
from .harness_fetch import BASE_URL, fetch_harness_execution
from .harness_frame import EXTRA_COLUMNS, load_harness_execution
from .harness_graph import ERROR_TYPE_MAP, STATUS_MAP
from .harness_json import MAX_BYTES, MAX_CONTAINERS, parse_execution_json, read_execution_json
from .harness_pipeline import UNKNOWN_STEPS, pipeline_from_execution

__all__ = [
    "BASE_URL",
    "ERROR_TYPE_MAP",
    "EXTRA_COLUMNS",
    "MAX_BYTES",
    "MAX_CONTAINERS",
    "STATUS_MAP",
    "UNKNOWN_STEPS",
    "HarnessExecutionError",
    "HarnessStatusWarning",
    "fetch_harness_execution",
    "load_harness_execution",
    "parse_execution_json",
    "pipeline_from_execution",
    "read_execution_json",
]
