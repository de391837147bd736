"""Step bodies as tasks on a Dask distributed cluster: :class:`DaskExecutor`.

``p.run(executor=nbp.DaskExecutor(client))`` runs the same pipeline, unchanged, with its step
bodies on the workers of a cluster the user already has (a ``LocalCluster``, ``dask scheduler`` +
``dask worker``, Kubernetes, SSH, an HPC job queue). Nothing else moves: the scheduler — every
rule of conditions, failure strategies, retries, timeouts, rollback — stays in the kernel, one
scheduler as for threads and virtual time; only bodies travel.

Design
------
**Before the run** (:meth:`DaskExecutor.open`, before any step starts): every step that has
something to run is packed once with cloudpickle — its body (or, for a typed step such as
``ShellScript``, the handler registered in the kernel), and for a code-text body the notebook
variables its code names. A body that does not pickle (a closure over a lock, an open file, a
client) is refused with a :class:`~notebook_pipelines.errors.DefinitionError` naming the step
(and the variable). Each step's delegate selectors (R62: a step's own, or its groups' under
``rules="current"``) become Dask worker *resources*, one unit of each tag: the step runs only on
a worker started with ``--resources "TAG=N"``, N at a time there. A selector that no connected
worker offers is refused the same way, naming the step and the tag. A cluster without workers
is refused (:class:`ClusterError`) rather than waited on.

**A job** is one task ``run_on_worker(key, packed step, context, spec)`` with its own key
(``nbp-STEP-ATTEMPT-…``), ``pure=False`` and the step's resources. A sender thread hands jobs to
the cluster as they come, those that piled up meanwhile in one ``client.map`` per resource set
(a wide parallel block is one graph for Dask, not hundreds). The packed step, the
:class:`~notebook_pipelines.StepContext` (plain fields; it pickles) and the resolved spec go
out; the worker runs the body with what it prints captured (per task: other tasks on the
worker print as before) and returns a small dict — status, Harness error type
(:func:`~notebook_pipelines.engine.executors.base.outcome_of_exception`), message, output
variables, log, start and end, and the worker's address, which is the trace's ``worker``.
Output variables that cannot be sent back fail the step, naming them.

**Completions** are event-driven: each future's done-callback puts it on a queue; one watcher
thread per run takes what is there, gathers the finished ones' results in one call and reports
each through ``run.complete`` (no polling). Worker times become run-clock times through the
offset between the wall clock and the run's clock taken at ``open`` (clamped to when the job
was submitted and when its result came: clocks of other machines may disagree).

**Stopping never waits.** ``cancel(job)`` (timeout, abort, interrupt) cancels the future. On
the worker, a plugin (:class:`StopBodies`) sees the task leave the ``executing`` state and
tells the body through its context (``ctx.cancelled``, ``ctx.sleep`` wakes, a ShellScript's
process group is killed); its late result is discarded. A body that ignores it runs on to its
end on the worker, as a thread does in the kernel.

**A worker that dies** (or leaves) with a step on it: the client subscribes to the scheduler's
``remove-worker`` events, fails those steps at once — error type ``Connectivity``, or
``DelegateRestart`` when the worker was retired on purpose — and cancels their futures, so
Dask does not quietly run them again elsewhere. The failure strategy decides (a ``Retry`` on
``Connectivity`` submits a fresh task); the trace stays complete. Errors of the cluster itself
(``KilledWorker``, a closed connection, a task cancelled by someone else) are ``Connectivity``.

Workers need what the bodies need: notebook-pipelines and the modules the bodies import
installed on them, as for any Dask code (functions defined in the notebook travel by value;
``cloudpickle.register_pickle_by_value(module)`` sends a local module's functions by value too).

>>> from distributed import LocalCluster, Client
>>> import notebook_pipelines as nbp
>>> cluster = LocalCluster(n_workers=2, processes=False, dashboard_address=":0")
>>> client = Client(cluster)
>>> p = nbp.Pipeline("p")
>>> with p.stage("s") as s:
...     _ = s.step("a", run=lambda: {"x": 1})
>>> trace = p.run(executor=nbp.DaskExecutor(client))
>>> a = trace[trace.step == "a"].iloc[0]
>>> a.status, a.outputs, a.worker in client.nthreads()
('Success', {'x': 1}, True)
>>> client.close(); cluster.close()
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import uuid
import warnings
from functools import partial
from typing import Any

try:
    import cloudpickle
    from distributed import Client
    from distributed.comm.core import CommClosedError
except ImportError as exc:  # pragma: no cover - the extra is installed where this is tested
    raise ImportError(
        f"nbp.DaskExecutor needs Dask distributed ({exc}): pip install 'notebook-pipelines[dask]'"
    ) from None

from ..definition.statuses import FAILED, SUCCESS
from ..engine.executors.base import Job, Outcome, outcome_of_exception
from ..engine.steptypes import step_type
from ..errors import ClusterError, DefinitionError, Problem
from .dask_client import NotDask, SchedulerEvents, cluster_workers, handshake
from .dask_worker import KEY_PREFIX, PLUGIN, PackedStep, StopBodies, run_on_worker

__all__ = ["ClusterError", "DaskExecutor", "StopBodies"]


# -- in the kernel --------------------------------------------------------------------------------
def _tags(selectors: Any) -> tuple[str, ...]:
    if not selectors:
        return ()
    if isinstance(selectors, str):
        return (selectors,)
    return tuple(str(tag) for tag in selectors)


def _names_read(code: str, fqn: str) -> set[str]:
    """The global names a code-text body may read (every name its code objects mention)."""
    names: set[str] = set()
    stack = [compile(code, f"<step {fqn}>", "exec")]
    while stack:
        obj = stack.pop()
        names.update(obj.co_names)
        stack.extend(c for c in obj.co_consts if hasattr(c, "co_names"))
    return names


def _drain(inbox: queue.SimpleQueue[Any]) -> tuple[list[Any], bool]:
    """Wait for one item, then take what else is there at once: ``(the items, whether the
    end-of-run marker None was among them)``, the marker left out."""
    batch = [inbox.get()]
    while True:
        try:
            batch.append(inbox.get_nowait())
        except queue.Empty:
            break
    return [item for item in batch if item is not None], None in batch


def _error_type(exc: BaseException) -> str:
    """The Harness error type of an error the cluster raised for a task (not the body's)."""
    from asyncio import CancelledError

    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker | CommClosedError | CancelledError | ConnectionError | OSError):
        return "Connectivity"
    return outcome_of_exception(exc)[1]


class DaskExecutor:
    """Runs step bodies as tasks on a Dask distributed cluster; see the module notes.

    Args:
        client: a connected ``distributed.Client`` (yours: the executor never closes it).
        address: or the scheduler's address (``"tcp://scheduler-host:8786"``): the executor connects
            on its first run and keeps the connection for later runs; :meth:`shutdown` (or a
            ``with`` block) closes it.
        capture: copy what bodies print into the trace's ``log`` column (default True).
        timeout: seconds to wait for the scheduler when connecting to ``address``.

    Raises:
        TypeError: without exactly one of ``client`` and ``address``.
    """

    name = "dask"
    clock = None
    #: typed steps (``ShellScript`` …) run on the worker through the handler registered here
    runs_handlers = True

    def __init__(
        self, client: Any = None, *, address: str | None = None, capture: bool = True, timeout: float = 10.0
    ):
        if (client is None) == (address is None):
            raise TypeError(
                "DaskExecutor takes a distributed.Client or address='tcp://HOST:PORT' (one of them)"
            )
        if client is not None and not isinstance(client, Client):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise TypeError(f"address must be the scheduler's address as text, got {address!r}")
        self._client, self.address, self._owns_client = client, address, client is None
        self.capture, self.timeout = capture, timeout
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # key -> job not reported yet
        self._futures: dict[str, Any] = {}  # key -> its future
        self._keys: dict[Job, str] = {}
        self._packed: dict[int, bytes] = {}
        self._resources: dict[int, dict[str, int]] = {}
        self._plugged: set[str] = set()  # clients (by id) the worker plugin is registered with
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # finished futures
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()  # jobs to hand to the cluster
        self._watcher: threading.Thread | None = None
        self._sender: threading.Thread | None = None

    # -- connection ---------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``distributed.Client`` (connected on first use when made from an address)."""
        if self._client is None:
            how = (
                f"start one with `dask scheduler` and workers with `dask worker {self.address}`, or check "
                "the address (the scheduler listens on 8786; 8787 is its dashboard)"
            )
            try:
                handshake(self.address, self.timeout)
            except NotDask as exc:
                raise ClusterError(f"{self.address!r} is not a Dask scheduler: {exc}; {how}") from None
            except TimeoutError:  # before OSError: socket.timeout is both
                raise ClusterError(
                    f"no Dask scheduler answered at {self.address!r} within {self.timeout:g} s (something "
                    f"accepted the connection but sent no Dask handshake); {how}"
                ) from None
            except (OSError, ValueError) as exc:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {self.address!r}: {exc}; {how}"
                ) from None
            try:
                self._client = Client(self.address, timeout=self.timeout, set_as_default=False)
            except Exception as exc:  # MemoryError too: whatever the peer did, a ClusterError
                raise ClusterError(
                    f"cannot connect to the Dask scheduler at {self.address!r}: {type(exc).__name__}: "
                    f"{str(exc)[:200]}; {how}"
                ) from None
        return self._client

    def shutdown(self) -> None:
        """Close the connection this executor opened (from ``address``); a client you gave stays open."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # -- the Executor protocol ----------------------------------------------------------------
    def open(self, run: Any) -> None:
        """Check every step against the cluster (see the module notes), then get ready."""
        client = self.client
        workers = cluster_workers(client)
        if not workers:
            where = self.address or client.scheduler.address
            raise ClusterError(
                f"the Dask cluster at {where} has no workers: start some (`dask worker {where}`) "
                "or scale the cluster up, then run again"
            )
        self._packed, self._resources = self._pack(run.plan, getattr(run, "namespace", None), workers)
        self.run = run
        self._offset = time.time() - run.now()
        self._jobs, self._futures, self._keys = {}, {}, {}
        if client.id not in self._plugged:
            client.register_plugin(StopBodies(), name=PLUGIN)
            self._plugged.add(client.id)
        SchedulerEvents.of(client).add(self)  # a worker that leaves with our steps on it
        self._done, self._outbox = queue.SimpleQueue(), queue.SimpleQueue()
        self._watcher = threading.Thread(
            target=self._watch, args=(self._done,), name="nbp-dask-watcher", daemon=True
        )
        self._sender = threading.Thread(
            target=self._send, args=(self._outbox,), name="nbp-dask-sender", daemon=True
        )
        self._watcher.start()
        self._sender.start()

    def _pack(self, plan: Any, namespace: dict | None, workers: dict) -> tuple[dict, dict]:
        """Each step's packed body and resources; every problem at once as a DefinitionError."""
        offered = [
            {tag for tag, amount in (info.get("resources") or {}).items() if amount and amount > 0}
            for info in workers.values()
        ]
        problems: list[Problem] = []
        packed: dict[int, bytes] = {}
        resources: dict[int, dict[str, int]] = {}
        for node in plan.nodes:
            if node.kind != "step" or node.barrier is not None:
                continue  # a Barrier step runs nothing: the scheduler waits there (R56)
            tags = _tags(node.delegate_selectors)
            if tags:
                resources[node.index] = dict.fromkeys(tags, 1)
                if not any(set(tags) <= have for have in offered):
                    missing = [tag for tag in tags if not any(tag in have for have in offered)]
                    known = ", ".join(sorted(set().union(*offered))) or "none"
                    if missing:
                        what = f"no worker of the Dask cluster offers {' or '.join(missing)}"
                    else:
                        what = f"no single worker of the Dask cluster offers {' and '.join(tags)} together"
                    problems.append(
                        Problem(
                            node.fqn,
                            "R62",
                            f"delegate selector(s) {', '.join(tags)}: {what} (worker resources: {known})",
                            f"start a worker with the resource, e.g. `dask worker ADDRESS --resources "
                            f'"{(missing or tags)[0]}=1"`, or drop the selector',
                        )
                    )
            if node.body is None and node.type is None:
                continue  # nothing to run: completes at once
            handler = None
            if node.body is None:
                registered = step_type(node.type)
                handler = registered.handler if registered is not None else None
            shipped = None
            if isinstance(node.body, str) and namespace:
                shipped, bad = {}, False
                for name in sorted(_names_read(node.body, node.fqn) & namespace.keys()):
                    if name in ("__builtins__", "ctx"):
                        continue
                    try:
                        cloudpickle.dumps(namespace[name])
                    except Exception as exc:
                        bad = True
                        problems.append(
                            Problem(
                                node.fqn,
                                "dask",
                                f"the notebook variable {name!r} ({type(namespace[name]).__name__}) that "
                                f"the step's code reads does not pickle, so it cannot be sent to a Dask "
                                f"worker: {type(exc).__name__}: {exc}",
                                "make it inside the step's code, or run this pipeline on threads",
                            )
                        )
                        continue
                    shipped[name] = namespace[name]
                if bad:
                    continue
            try:
                packed[node.index] = cloudpickle.dumps(PackedStep(node, handler, shipped))
            except Exception as exc:
                what = "handler" if handler is not None else "body"
                problems.append(
                    Problem(
                        node.fqn,
                        "dask",
                        f"the step's {what} does not pickle, so it cannot be sent to a Dask worker: "
                        f"{type(exc).__name__}: {exc}",
                        "make it a function of plain values: create locks, open files, connections and "
                        "clients inside the body, not around it",
                    )
                )
        if problems:
            raise DefinitionError(problems)
        return packed, resources

    def submit(self, job: Job) -> None:
        if not job.runs_code:  # nothing to run: done at once
            now = self.run.now()
            self.run.complete(job, Outcome(SUCCESS, now, now, "main"))
            return
        key = f"{KEY_PREFIX}{job.node.id}-{job.attempt}-{uuid.uuid4().hex}"
        _ = job.ctx  # made here, on the run's thread
        with self._lock:
            self._jobs[key], self._keys[job] = job, key
        self._outbox.put((key, job))

    def _send(self, outbox: queue.SimpleQueue) -> None:
        """The sender thread: hands jobs to the cluster in batches (one ``client.map`` per
        resource set for what piled up meanwhile: a wide parallel block is one graph, not
        hundreds), until the run closes."""
        while True:
            batch, last = _drain(outbox)
            groups: dict[tuple, list[tuple[str, Job]]] = {}
            for item in batch:
                resources = self._resources.get(_planned(item[1].node).index)
                groups.setdefault(tuple(sorted((resources or {}).items())), []).append(item)
            for resources, items in groups.items():
                self._map(items, dict(resources) or None)
            if last:
                return

    def _map(self, items: list[tuple[str, Job]], resources: dict | None) -> None:
        keys = [key for key, _job in items]
        try:
            futures = self._client.map(
                partial(run_on_worker, capture=self.capture),
                keys,
                [self._packed[_planned(job.node).index] for _key, job in items],
                [job.ctx for _key, job in items],
                [job.spec for _key, job in items],
                key=keys,
                pure=False,
                resources=resources,
            )
        except Exception:  # one job's inputs or spec do not pickle (or the client closed): one by one
            if len(items) > 1:
                for item in items:
                    self._map([item], resources)
                return
            key, job = items[0]
            with self._lock:
                mine = self._jobs.pop(key, None) is not None
                self._keys.pop(job, None)
            if mine:
                exc = sys.exc_info()[1]
                text = f"could not send the step to the Dask cluster: {type(exc).__name__}: {exc}"
                outcome = Outcome(FAILED, job.submitted, self.run.now(), None, _error_type(exc), text)
                self.run.complete(job, outcome)
            return
        dropped = []
        with self._lock:
            for key, future in zip(keys, futures):
                if key in self._jobs:
                    self._futures[key] = future
                else:  # told to stop while it was being sent
                    dropped.append(future)
        for key, future in zip(keys, futures):
            if key in self._futures:
                future.add_done_callback(self._done.put)
        if dropped:
            self._client.cancel(dropped, reason="the step was told to stop before it started")

    def cancel(self, job: Job) -> None:
        job.ctx.cancel()
        with self._lock:
            key = self._keys.pop(job, None)
            self._jobs.pop(key, None)
            future = self._futures.pop(key, None)
        if future is not None:
            try:
                future.cancel(reason=f"{job.node.fqn} was told to stop")
            except Exception as exc:  # the connection is gone: nothing runs there any more
                warnings.warn(f"could not cancel {job.node.fqn} on the cluster: {exc}", RuntimeWarning, 2)

    def close(self, cancel: bool = False) -> None:
        """The run ends; with ``cancel``, its tasks still on the cluster are cancelled."""
        self._outbox.put(None)
        if self._sender is not None:
            self._sender.join(5.0)  # it only sends what is already queued
            self._sender = None
        with self._lock:
            futures = list(self._futures.values())
            self._jobs, self._futures, self._keys = {}, {}, {}
        client = self._client
        if cancel and futures and client is not None:
            try:
                client.cancel(futures, reason="the run was stopped")
            except Exception:  # pragma: no cover - a closed connection: nothing runs there any more
                pass
        if client is not None:
            SchedulerEvents.of(client).discard(self)
        self._done.put(None)
        if self._watcher is not None:
            self._watcher.join(5.0)  # it only gathers results already computed
            self._watcher = None

    # -- completions --------------------------------------------------------------------------
    def _watch(self, done: queue.SimpleQueue) -> None:
        """The watcher thread: report finished futures in batches until the run closes."""
        while True:
            batch, last = _drain(done)
            self._report(batch)
            if last:
                return

    def _report(self, futures: list) -> None:
        with self._lock:
            mine = [(f, self._jobs.pop(f.key)) for f in futures if f.key in self._jobs]
            for future, job in mine:
                self._futures.pop(future.key, None)
                self._keys.pop(job, None)
        if not mine:
            return
        finished = [f for f, _job in mine if f.status == "finished"]
        results: dict[str, Any] = {}
        if finished:
            try:
                results = dict(zip([f.key for f in finished], self._client.gather(finished)))
            except Exception:  # one at a time then: each failure is its step's own
                for future in finished:
                    try:
                        results[future.key] = future.result()
                    except Exception as exc:
                        results[future.key] = exc
        for future, job in mine:
            self.run.complete(job, self._outcome(future, job, results.get(future.key)))

    def _outcome(self, future: Any, job: Job, result: Any) -> Outcome:
        now = self.run.now()
        if isinstance(result, dict):
            start = min(max(result["start"] - self._offset, job.submitted), now)
            end = min(max(result["end"] - self._offset, start), now)
            return Outcome(
                result["status"],
                start,
                end,
                result["worker"],
                result["error_type"],
                result["error"],
                outputs=result["outputs"],
                log=result["log"],
            )
        if isinstance(result, BaseException):
            exc = result
        elif future.status == "error":
            exc = future.exception()
        else:
            exc = None
        if exc is None:
            text = f"the Dask cluster dropped the task ({future.status})"
            return Outcome(FAILED, job.submitted, now, None, "Connectivity", text)
        text = f"{type(exc).__name__}: {exc}"
        return Outcome(FAILED, job.submitted, now, None, _error_type(exc), text)

    def _worker_left(self, message: dict) -> Any:
        """A worker left (on the client's event loop): fail the steps it had, cancel their tasks."""
        worker = message.get("worker")
        error_type = "DelegateRestart" if message.get("expected") else "Connectivity"
        how = "was retired" if message.get("expected") else "died"
        lost = []
        with self._lock:
            for key in message.get("processing-tasks") or ():
                job = self._jobs.pop(key, None)
                if job is not None:
                    self._keys.pop(job, None)
                    lost.append((job, self._futures.pop(key, None)))
        if not lost:
            return None
        now = self.run.now()
        for job, _future in lost:
            text = f"the Dask worker {worker} {how} while the step was on it"
            self.run.complete(job, Outcome(FAILED, job.submitted, now, worker, error_type, text))
        # not run again elsewhere: the failure strategy decides (we are on the event loop: async)
        return self._client.cancel(
            [f for _job, f in lost if f is not None], asynchronous=True, reason=f"worker {worker} {how}"
        )

    def __repr__(self) -> str:
        where = self.address if self._client is None else self._client.scheduler.address
        return f"<DaskExecutor scheduler={where}>"


def _planned(node: Any) -> Any:
    """The plan node whose body and resources were packed (:meth:`DaskExecutor._pack`): ``node``
    itself, or for an iteration's copy of a looped node (made while running, R46) the node it
    copies."""
    return node.origin if node.origin is not None else node
