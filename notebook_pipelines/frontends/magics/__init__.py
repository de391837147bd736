"""IPython magics: build a pipeline cell by cell.

``%load_ext notebook_pipelines`` registers four magics. ``%pipeline?``, ``%stage?``,
``%step_group?`` and ``%step?`` show their help::

    %pipeline release --var env=prod            # start (or select) a pipeline
    %stage build                                # start (or select) a stage

    %%step checkout                             # a step: the cell is its body
    print("checking out")

    %%step_group tests                          # a step group and its layout:
    unit, lint                                  #   block 0: unit and lint together
    integration, e2e                            #   block 1, after block 0

    %%step unit --group tests --retry 2         # a body for a step of the layout
    run_unit_tests()

    %stage deploy_us --parallel-with deploy_eu  # stages side by side
    %pipeline run                               # or: show, simulate, trace, yaml, validate, delete

Design notes
------------
* **The pipeline is a plain** :class:`~notebook_pipelines.definition.model.Pipeline` kept in the user
  namespace under its name, so the Python API works on it between magics (``release.find(…)``,
  ``release.simulate()``), and the magics work on whatever object that name holds.
* **State**: the current pipeline's name, per pipeline the current stage (``%stage``), and
  per cell the pipeline and stage its node went into. A cell says where its node goes
  (``--group``, ``--stage``, ``--parallel-with``, ``--rollback``); what it leaves out comes
  from the current stage the first time, and from the cell's own stage when the same cell runs
  again — so going back to edit ``checkout`` after ``%stage deploy_us`` redefines the
  ``checkout`` of ``build``. Cells are known by the id the front-end sends (JupyterLab,
  Notebook 7 and VS Code do; terminal IPython and nbclient do not). Without it the current
  stage applies, a ``--group`` is looked up in the whole pipeline when the current stage has
  none of that name, and a new step or group that copies one in another stage prints a hint
  to pass ``--stage``.
* **Parallel blocks are an option, not a bracket**: ``--parallel-with unit`` puts the node in
  ``unit``'s block. A ``%parallel`` … ``%end_parallel`` pair spanning cells would be state the
  reader cannot see in the cell, and re-running one cell from the middle of it later would
  land elsewhere. A ``%%step_group`` cell may instead list the group's blocks, one line each.
* **Blocks count from 0**, like the trace's ``block`` column (a node's place in its list, a
  parallel block counting as one place): "block 0" in a cell's message is the node whose trace
  rows say ``block == 0``.
* **Redefine, never duplicate**: a node whose id already exists in the container takes the old
  node's place, inside its parallel block too. The cell prints one line saying what changed
  and one line showing where the node sits (serial ``→``, parallel ``∥``, the node in ``[ ]``)::

      group `tests`: block 1 gained `e2e`
      release › build › tests: unit ∥ lint → integration ∥ [e2e]

* **Containers also select**: ``%pipeline``, ``%stage`` and ``%step_group`` update the
  settings you pass and keep the others. A ``%%step`` cell defines the whole step: a setting
  it does not pass is unset.
* **Bodies are code text**, checked to compile but never run when the cell runs.
  ``%pipeline run`` runs them with ``exec`` in the user namespace
  (``p.run(namespace=get_ipython().user_ns)``): a body reads and writes notebook variables,
  and ``--outputs a,b`` exports those names as the step's output variables. Parallel steps
  share that one namespace: bodies in one parallel block that assign the same name race, and
  so does ``ctx`` (the step context the engine puts in the namespace before each body). Give
  parallel bodies distinct names, or use a callable body (``def unit(ctx): …``) through the
  Python API for parallel work that needs its context.
* **User mistakes** (an unknown group, a step outside a stage, a bad option) raise
  :class:`~IPython.core.error.UsageError` with one line; IPython shows it without a traceback.
* The plain functions of :mod:`.building` (``define_step``, ``define_group``, ``place``, ``picture``…) do
  the work and can be called without a shell; the magics parse arguments and print.
"""

from __future__ import annotations

from .building import (
    define_group,
    define_pipeline,
    define_stage,
    define_step,
    delete_node,
    parse_layout,
    picture,
    place,
    run_summary,
)
from .pipeline_magics import PipelineMagics, load_ipython_extension

__all__ = [
    "PipelineMagics",
    "define_group",
    "define_pipeline",
    "define_stage",
    "define_step",
    "delete_node",
    "load_ipython_extension",
    "parse_layout",
    "picture",
    "place",
    "run_summary",
]
