"""Side-by-side benchmarks of notebook-pipelines against baselines: ``python -m benchmarks``.

Design
------
Every workload times the *whole public call* a user makes — ``p.run(report=False,
progress=False)`` (the engine, no progress view) or ``p.simulate()``, compile and trace
DataFrame included — next to one or more baselines doing the same work in the same process,
and reports the ratio of medians. Only the public API is
used (``nbp.Pipeline``, ``p.stage``, ``s.step``, ``s.step_group``, ``x.parallel()``,
``p.run``, ``p.simulate``), so the suite keeps working while the package's internals move.

- :mod:`benchmarks.measure` — the timing harness: one untimed warm-up call, then ``repeat``
  timed calls, each after an untimed ``setup()`` (a fresh pipeline) and a ``gc.collect()``;
  the peak of ``tracemalloc``; a subprocess import timer.
- :mod:`benchmarks.baselines` — the same work on a warm ``ThreadPoolExecutor`` and, when it
  is installed, on Dask's threaded scheduler.
- :mod:`benchmarks.workloads` — the pipelines, the workloads and their budgets (the registry
  ``WORKLOADS``).
- :mod:`benchmarks.report` — result rows, JSON lines and the human table.

Engines are named ``nbp`` (ours), ``threadpool`` (the baseline every ``ratio`` divides by),
``dask-threads``, ``ideal`` (the bound of perfect overlap) and, for the import workload,
``pandas``. A baseline that cannot run is a row saying why (``"missing"``), never a number.
"""
