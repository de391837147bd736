"""The errors of the cluster executors, importable without a cluster library installed
(``except nbp.ClusterError`` works whether or not Dask is there)."""

from __future__ import annotations

from ..errors import PipelineError

__all__ = ["ClusterError"]


class ClusterError(PipelineError, ConnectionError):
    """The Dask cluster cannot take the run: unreachable, or no worker connected."""
