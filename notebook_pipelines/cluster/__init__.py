"""Executors that run step bodies on a cluster, outside the kernel (``cluster.dask``).

A layer above the engine, beside ``analysis``/``formats``/``views``: the engine's
:class:`~notebook_pipelines.engine.executors.base.Executor` protocol is the seam, and the core
(definition, engine) never imports a cluster library. Nothing is imported here: ``nbp.DaskExecutor``
loads :mod:`.dask` (and Dask) on first use.
"""
