"""The magics themselves: ``PipelineMagics`` parses each magic's line, calls the plain functions of
:mod:`.building` and prints what they say; ``load_ipython_extension`` registers it.

See :mod:`notebook_pipelines.frontends.magics` for the design.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    cell_magic,
    line_cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
    output_can_be_silenced,
)
from IPython.core.magic_arguments import argument, magic_arguments

from ...definition.failure import Retry
from ...definition.model import Pipeline, Stage, Step, StepGroup
from ...errors import DefinitionError
from .building import (
    COMMANDS,
    TRACE_COLUMNS,
    chain_to,
    define_group,
    define_pipeline,
    define_stage,
    define_step,
    delete_node,
    elsewhere_hint,
    find_container,
    invalid_message,
    picture,
    run_summary,
    walk_nodes,
)
from .options import PIPELINE_OPTIONS, checked_duration, checked_when, failures_of, parse_line, variables_of


def _has_stage(p: Pipeline, id: str | None) -> bool:
    """Whether pipeline ``p`` has a stage ``id`` (anywhere: stages may sit in parallel blocks)."""
    return any(isinstance(n, Stage) and n.id == id for n, _c, _rb in walk_nodes(p))


@magics_class
class PipelineMagics(Magics):
    """``%pipeline``, ``%stage``, ``%step_group`` and ``%%step``: see the module docstring."""

    def __init__(self, shell: Any = None):
        super().__init__(shell)
        self.current: str | None = None  # the name of the current pipeline in user_ns
        self.stages: dict[str, str | None] = {}  # pipeline name -> current stage id
        self.traces: dict[str, Any] = {}  # pipeline name -> last trace made through %pipeline
        self.cell_id: str | None = None  # the running cell's id, when the front-end sends one
        self.cells: dict[str, tuple[str, str]] = {}  # cell id -> (pipeline name, stage id) of its node
        self.dask: dict[str, Any] = {}  # scheduler address -> DaskExecutor (its connection kept)

    def cell_started(self, info: Any) -> None:
        """``pre_run_cell`` hook: note the cell's id (JupyterLab, Notebook 7 and VS Code send it)."""
        self.cell_id = getattr(info, "cell_id", None)

    def cell_finished(self, result: Any) -> None:
        """``post_run_cell`` hook: magics called outside a cell have no cell id."""
        self.cell_id = None

    # -- state --------------------------------------------------------------------------------
    def _pipeline(self) -> Pipeline:
        if self.current is None:
            raise UsageError("no current pipeline: start one with `%pipeline NAME`")
        p = self.shell.user_ns.get(self.current)
        if not isinstance(p, Pipeline):
            raise UsageError(
                f"`{self.current}` no longer holds a Pipeline: run `%pipeline {self.current}` again"
            )
        return p

    def _stage_id(self, p: Pipeline) -> str | None:
        stage = self.stages.get(self.current)
        if stage is not None and not _has_stage(p, stage):
            self.stages[self.current] = None
            return None
        return stage

    def _target(self, stage: str | None) -> tuple[str, Pipeline, str | None]:
        """The pipeline (name, object) and stage a node cell works on: when this very cell ran
        before, the ones it used then (so a re-run lands in the same place); else the current."""
        name, old = self.cells.get(self.cell_id, (None, None)) if self.cell_id else (None, None)
        p = self.shell.user_ns.get(name) if name else None
        known = isinstance(p, Pipeline) and _has_stage(p, old)
        if known and not stage:
            return name, p, old
        p = self._pipeline()
        return self.current, p, self._stage_id(p)

    def _remember(self, name: str, p: Pipeline, container: Any) -> None:
        if self.cell_id:
            self.cells[self.cell_id] = (name, chain_to(p, container)[1].id)

    # -- %pipeline ----------------------------------------------------------------------------
    @magic_arguments()
    @argument("words", nargs="*", help="NAME of a pipeline to start or select, or a command and its argument")
    @argument(
        "--rules", choices=("classic", "current"), help="with NAME: classic (groups not nested) or current"
    )
    @argument("--var", action="append", metavar="NAME=VALUE", help="with NAME: a pipeline variable; repeat")
    @argument("--timeout", help="with NAME: the pipeline timeout, e.g. 1h")
    @argument(
        "--force",
        action="store_true",
        help="with NAME: take the name even if it hides a builtin or holds another value",
    )
    @argument("--text", action="store_true", help="show: a text outline instead of the picture")
    @argument("--trace", action="store_true", help="show: colour by the last trace")
    @argument("--run-id", help="run, simulate: fix the run id")
    @argument("--check", action="store_true", help="run: raise RunFailed when the run does not succeed")
    @argument(
        "--dask",
        metavar="ADDRESS",
        help="run: the bodies on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT)",
    )
    @argument("--seed", type=int, help="simulate: seed for sampled durations (default 0)")
    @argument("--default", help="simulate: duration of steps that declare none (default 1s)")
    @argument(
        "--fail",
        action="append",
        metavar="STEP[:ATTEMPTS][:ERROR]",
        help="simulate: make STEP fail (every attempt, or attempts 1,2), as on the command line; repeat",
    )
    @argument(
        "--iterations",
        action="append",
        metavar="NODE=N",
        help="simulate: a looped NODE whose items are known only in a run has N of them; repeat",
    )
    @argument(
        "--max-parallel",
        type=int,
        metavar="N",
        help="suggest: at most N units (step, step group, looped step) at once",
    )
    @argument(
        "--across-stages",
        action="store_true",
        help="suggest: stages that nothing orders may run in parallel (default: stage order kept)",
    )
    @argument(
        "--constraint",
        action="append",
        metavar="FIRST:SECOND",
        help="suggest: SECOND never starts before FIRST ends; repeat",
    )
    @argument("--columns", help="trace: columns to show, comma separated")
    @argument("--steps", action="store_true", help="trace: step rows only")
    @argument("--all", action="store_true", help="trace: every column")
    @output_can_be_silenced
    @no_var_expand
    @line_magic
    def pipeline(self, line: str = "") -> Any:
        """Start or select a pipeline, or act on the current one.

        ::

          %pipeline NAME [--rules classic|current] [--var NAME=VALUE]... [--timeout T] [--force]
          %pipeline show [--text] [--trace]     the picture (or a text outline)
          %pipeline run [--run-id ID] [--check] run the bodies in this kernel
          %pipeline run --dask ADDRESS          … or on a Dask cluster (scheduler at ADDRESS)
          %pipeline simulate [--seed N] [--default 5s] [--fail STEP[:ATTEMPTS][:ERROR]]...
                             [--iterations NODE=N]...
          %pipeline trace [--steps] [--columns a,b | --all]   the last run's trace
          %pipeline yaml                        the Harness YAML
          %pipeline validate                    "valid", or every problem
          %pipeline delete ID|STAGE.GROUP.ID    delete a step, group or stage
          %pipeline suggest [--default 5s] [--max-parallel N] [--constraint FIRST:SECOND]...
                            [--across-stages]
                                                faster layouts (nbp.suggest_layout), best first

        ``NAME`` becomes a variable holding the ``Pipeline``, so the Python API works on it too;
        a name that would hide a builtin (``print``) or replace another value needs ``--force``.
        Selecting an existing pipeline keeps the settings you do not pass. ``run`` runs the
        code bodies in the notebook's namespace (``p.run(namespace=...)``); with ``--dask`` they
        run on the cluster's workers, each with a copy of the notebook variables its code names
        (what it assigns stays there: ``--outputs`` brings values back); ``run`` and
        ``simulate`` print one line; ``trace`` returns the trace as a DataFrame (a few
        columns unless told otherwise: ``trace = %pipeline trace --all`` keeps all of it).

        Example::

          %pipeline release --var env=prod
          %stage build
          ...
          %pipeline run
          %pipeline trace --steps --columns step,status,attempt
        """
        args = parse_line(self.pipeline, line)
        words = args.words
        command = words[0] if words and words[0] in COMMANDS else None
        rest = words[1:] if command else words
        self._check_options(args, command)
        if command is None:
            if len(rest) > 1:
                raise UsageError(
                    f"%pipeline takes one NAME (got {' '.join(rest)}); commands: {', '.join(COMMANDS)}"
                )
            if not rest:
                return self._status()
            _p, message = define_pipeline(
                self.shell.user_ns,
                rest[0],
                rules=args.rules,
                variables=variables_of(args.var),
                timeout=checked_duration(args.timeout, "--timeout"),
                force=args.force,
            )
            self.current = rest[0]
            self.stages.setdefault(rest[0], None)
            print(message)
            return None
        if command == "delete":
            if len(rest) != 1:
                raise UsageError("write `%pipeline delete ID` or `%pipeline delete STAGE.GROUP.ID`")
        elif rest:
            raise UsageError(f"`%pipeline {command}` takes no argument `{rest[0]}`")
        p = self._pipeline()
        return getattr(self, f"_{command}")(p, args, *rest)

    def _check_options(self, args: Any, command: str | None) -> None:
        defaults = vars(self.pipeline.parser.parse_args([]))
        for name, value in vars(args).items():
            if name != "words" and value != defaults[name] and name not in PIPELINE_OPTIONS[command]:
                flag = "--" + name.replace("_", "-")
                where = f"`%pipeline {command}`" if command else "`%pipeline NAME`"
                raise UsageError(f"{flag} does not apply to {where}")

    def _status(self) -> None:
        p = self._pipeline()
        stage = self._stage_id(p)
        at = f", stage `{stage}`" if stage else ""
        print(f"pipeline `{p.id}` ({p.rules} rules){at}: {picture(p.stages, mark=stage)}")

    def _show(self, p: Pipeline, args: Any) -> None:
        trace = self._last_trace(p) if args.trace else None
        if args.text:
            from ...views.rendering import outline as text_outline

            try:
                print(text_outline(p, trace))
            except DefinitionError as exc:
                raise UsageError(invalid_message(p, exc)) from None
            return
        from IPython.display import display

        display(p.render(trace) if trace is not None else p)

    def _run(self, p: Pipeline, args: Any) -> None:
        from ...errors import RunFailed

        executor = self._dask_executor(args.dask) if args.dask else None
        try:
            trace = p.run(namespace=self.shell.user_ns, run_id=args.run_id, report=False, executor=executor)
        except DefinitionError as exc:
            raise UsageError(invalid_message(p, exc)) from None
        except ConnectionError as exc:  # the cluster is unreachable or has no workers
            raise UsageError(f"--dask {args.dask}: {exc}") from None
        self.traces[self.current] = trace
        text = run_summary(trace)
        print(text)
        if args.check and set(trace.loc[trace["kind"] == "pipeline", "status"].astype(str)) != {"Success"}:
            raise RunFailed(text, trace)

    def _dask_executor(self, address: str) -> Any:
        """One executor per scheduler address, kept: the connection is reused by later runs."""
        executor = self.dask.get(address)
        if executor is None:
            try:
                from ...cluster.dask import DaskExecutor
            except ImportError as exc:
                raise UsageError(str(exc)) from None
            executor = self.dask[address] = DaskExecutor(address=address)
        return executor

    def _simulate(self, p: Pipeline, args: Any) -> None:
        from ...analysis.options import in_flags, parse_iterations
        from ...engine.simulation import SimulationError, simulate

        try:
            plan = p.plan()
        except DefinitionError as exc:
            raise UsageError(invalid_message(p, exc)) from None
        options: dict[str, Any] = {"failures": failures_of(args.fail), "run_id": args.run_id}
        if args.seed is not None:
            options["seed"] = args.seed
        if args.default is not None:
            options["default"] = checked_duration(args.default, "--default")
        try:  # strict keys: a --fail step that matches no step is refused, with a close match
            options["iterations"] = parse_iterations(args.iterations) or None
            trace = simulate(plan, strict=True, **options)
        except SimulationError as exc:
            raise UsageError(in_flags(exc).splitlines()[0]) from None
        self.traces[self.current] = trace
        print(run_summary(trace, virtual=True))

    def _suggest(self, p: Pipeline, args: Any) -> Any:
        """The design assistant's suggestions (shown as a table and the best picture)."""
        from ...analysis.layout import LayoutError, suggest_layout

        try:
            p.plan()
        except DefinitionError as exc:
            raise UsageError(invalid_message(p, exc)) from None
        constraints = []
        for text in args.constraint or ():
            first, sep, second = text.partition(":")
            if not sep or not first or not second:
                raise UsageError(f"--constraint {text}: write FIRST:SECOND (two identifiers)")
            constraints.append((first, second))
        options: dict[str, Any] = {
            "constraints": constraints,
            "max_parallel": args.max_parallel,
            "across_stages": args.across_stages,
        }
        if args.default is not None:
            options["default"] = checked_duration(args.default, "--default")
        try:
            return suggest_layout(p, **options)
        except LayoutError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None

    def _last_trace(self, p: Pipeline) -> Any:
        trace = self.traces.get(self.current)
        if trace is None:
            from ...engine.running import last_trace

            trace = last_trace()
            if trace is None or trace.attrs.get("pipeline") != p.id:
                raise UsageError(f"no trace of `{p.id}` yet: `%pipeline run` or `%pipeline simulate` first")
        return trace

    def _trace(self, p: Pipeline, args: Any) -> Any:
        from ...engine.trace import COLUMNS

        trace = self._last_trace(p)
        if args.steps:
            trace = trace[trace["kind"] == "step"]
        if args.columns:
            columns = [c.strip() for c in args.columns.split(",") if c.strip()]
            unknown = [c for c in columns if c not in COLUMNS]
            if unknown:
                raise UsageError(f"no trace column `{unknown[0]}`; columns: {', '.join(COLUMNS)}")
        else:
            columns = list(COLUMNS) if args.all else list(TRACE_COLUMNS)
        return trace[columns].reset_index(drop=True)

    def _yaml(self, p: Pipeline, args: Any) -> None:
        try:
            text = p.to_yaml()
        except DefinitionError as exc:
            raise UsageError(invalid_message(p, exc)) from None
        print(text, end="" if text.endswith("\n") else "\n")

    def _validate(self, p: Pipeline, args: Any) -> None:
        try:
            p.validate()
        except DefinitionError as exc:
            print(exc)
        else:
            print("valid")

    def _delete(self, p: Pipeline, args: Any, path: str) -> None:
        node, message = delete_node(p, path, self._stage_id(p))
        if isinstance(node, Stage) and self.stages.get(self.current) == node.id:
            self.stages[self.current] = None
        print(message)

    # -- %stage -------------------------------------------------------------------------------
    @magic_arguments()
    @argument("id", help="stage identifier")
    @argument("--parallel-with", metavar="STAGE", help="run side by side with this stage")
    @argument("--name", help="display name")
    @argument(
        "--when",
        help='"Success" | "Failure" | "All" | a condition such as "<+pipeline.variables.env> == \'prod\'"',
    )
    @argument("--timeout", help="stage timeout, e.g. 30m")
    @argument("--type", help="Harness stage type (Custom, Deployment, CI…)")
    @argument("--resource", help="resource key: parallel stages with the same key do not overlap")
    @argument("--needs", metavar="a,b", help="stages of its parallel block it waits for (D14)")
    @no_var_expand
    @line_magic
    def stage(self, line: str = "") -> None:
        """Start or select a stage of the current pipeline; later steps go into it.

        Re-running the cell keeps the stage's steps; the options you pass update its settings.

        Example::

          %stage build
          %stage deploy_eu --when "<+pipeline.variables.env> == 'prod'"
          %stage deploy_us --parallel-with deploy_eu
          %stage docs --parallel-with deploy_eu --needs deploy_eu
        """
        args = parse_line(self.stage, line)
        p = self._pipeline()
        message = define_stage(
            p,
            args.id,
            parallel_with=args.parallel_with,
            name=args.name,
            when=checked_when(args.when),
            timeout=checked_duration(args.timeout, "--timeout"),
            type=args.type,
            resource=args.resource,
            needs=_names(args.needs, "--needs"),
        )
        self.stages[self.current] = args.id
        print(message)

    # -- %step_group / %%step_group -----------------------------------------------------------
    @magic_arguments()
    @argument("id", help="step group identifier")
    @argument("--stage", help="the stage (default: the current stage)")
    @argument("--group", metavar="PARENT", help="the parent group (nested groups need --rules current)")
    @argument("--parallel-with", metavar="ID", help="run together with this sibling")
    @argument("--rollback", action="store_true", help="put the group in the rollback list")
    @argument("--name", help="display name")
    @argument("--when", help='"Success" | "Failure" | "All" | a condition; applies to its steps')
    @argument("--timeout", help="group timeout (--rules current only, R60)")
    @no_var_expand
    @line_cell_magic
    def step_group(self, line: str = "", cell: str | None = None) -> None:
        """Add or select a step group in the current stage; as a cell, the cell is its layout.

        The layout has one line per block; ids in one line run together, the blocks run one
        after the other. Steps it names get their bodies from ``%%step ID --group GROUP``
        cells (before or after); re-running the layout keeps their bodies, and drops steps
        it no longer lists.

        Example::

          %%step_group tests --when "<+pipeline.variables.env> == 'prod'"
          unit, lint          # block 0: unit and lint together
          integration, e2e    # block 1, after block 0
        """
        args = parse_line(self.step_group, line)
        name, p, current = self._target(args.stage)
        container = find_container(p, args.stage, args.group, f"step group `{args.id}`", current)
        hint = elsewhere_hint(p, container, StepGroup(args.id)) if not (args.stage or args.group) else ""
        message = define_group(
            p,
            container,
            args.id,
            layout=cell,
            parallel_with=args.parallel_with,
            rollback=args.rollback,
            name=args.name,
            when=checked_when(args.when),
            timeout=checked_duration(args.timeout, "--timeout"),
        )
        self._remember(name, p, container)
        print(message + hint)

    # -- %%step -------------------------------------------------------------------------------
    @magic_arguments()
    @argument("id", help="step identifier")
    @argument("--group", help="the step group (default: directly in the stage)")
    @argument("--stage", help="the stage (default: the current stage)")
    @argument("--parallel-with", metavar="ID", help="run together with this sibling")
    @argument("--rollback", action="store_true", help="put the step in the rollback list")
    @argument("--name", help="display name")
    @argument("--timeout", help="step timeout, e.g. 30s")
    @argument(
        "--when",
        help='"Success" | "Failure" | "All" | a condition such as "<+pipeline.variables.env> == \'prod\'"',
    )
    @argument("--retry", type=int, metavar="N", help="retry up to N times on any error")
    @argument("--retry-interval", metavar="T", help="wait between retries, e.g. 10s")
    @argument("--outputs", metavar="a,b", help="names the body assigns, exported as output variables")
    @argument("--duration", help="how long simulate() takes for this step, e.g. 5s")
    @argument("--needs", metavar="a,b", help="steps of its parallel block it waits for (D14)")
    @no_var_expand
    @cell_magic
    def step(self, line: str, cell: str) -> None:
        """Define (or redefine) a step; the cell is its body, run only when the pipeline runs.

        The body runs in this notebook's namespace, so it reads and writes your variables;
        ``--outputs`` names become the step's output variables. Re-running the cell replaces
        the step in its place and prints what changed. Without ``--group`` the step goes
        directly into the stage; a cell passes every setting of the step (an option it does
        not pass is unset).

        Example::

          %%step unit --group tests --parallel-with lint --retry 2 --timeout 30s --outputs coverage
          coverage = run_unit_tests()

        ``--needs a,b`` (with ``--parallel-with``): the members of its parallel block it waits for
        (it starts when they have ended, not with the block; D14).
        """
        args = parse_line(self.step, line)
        name, p, current = self._target(args.stage)
        container = find_container(p, args.stage, args.group, f"step `{args.id}`", current)
        body = cell.rstrip() or None
        if body is not None:
            try:
                compile(body, f"<step {args.id}>", "exec")
            except SyntaxError as exc:
                raise UsageError(
                    f"step `{args.id}`: the body does not compile ({exc.msg}, line {exc.lineno}); "
                    "it is plain Python (no `!` or `%` lines)"
                ) from None
            except (MemoryError, RecursionError):  # e.g. 100,000 unary minus signs: the parser gives up
                raise UsageError(
                    f"step `{args.id}`: the body is nested too deeply for Python to compile "
                    f"({len(body)} characters); split the expression into several statements"
                ) from None
        outputs = [o.strip() for o in args.outputs.split(",") if o.strip()] if args.outputs else None
        for output in outputs or ():  # not `name`: that holds the pipeline's name, remembered below
            if not output.isidentifier():
                raise UsageError(f"--outputs: `{output}` is not a Python name")
        if args.retry_interval is not None and args.retry is None:
            raise UsageError("--retry-interval needs --retry N")
        retry = None
        if args.retry is not None:
            if args.retry < 1:
                raise UsageError("--retry N needs N ≥ 1")
            interval = checked_duration(args.retry_interval, "--retry-interval")
            retry = Retry(args.retry, intervals=interval or ())
        step = Step(
            args.id,
            body,
            name=args.name,
            when=checked_when(args.when),
            failure_strategies=retry,
            timeout=checked_duration(args.timeout, "--timeout"),
            duration=checked_duration(args.duration, "--duration"),
            outputs=outputs,
            needs=_names(args.needs, "--needs"),
        )
        hint = elsewhere_hint(p, container, step) if not (args.stage or args.group) else ""
        message = define_step(p, container, step, parallel_with=args.parallel_with, rollback=args.rollback)
        self._remember(name, p, container)
        print(message + hint)


def _names(text: str | None, option: str) -> list[str] | None:
    """``a,b`` → ``["a", "b"]`` (None when not given); each must be an identifier."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if not n.replace("$", "_").isidentifier():
            raise UsageError(f"{option}: `{n}` is not an identifier")
    return names or None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext notebook_pipelines``: register ``%pipeline``, ``%stage``, ``%step_group``, ``%%step``.

    Loading again replaces the magics (and their state) and their cell hooks.
    """
    old = ipython.magics_manager.registry.get(PipelineMagics.__name__)
    if old is not None:
        for event, hook in (("pre_run_cell", old.cell_started), ("post_run_cell", old.cell_finished)):
            if hook in ipython.events.callbacks[event]:
                ipython.events.unregister(event, hook)
    magics = PipelineMagics(ipython)
    ipython.register_magics(magics)
    ipython.events.register("pre_run_cell", magics.cell_started)
    ipython.events.register("post_run_cell", magics.cell_finished)
