"""The errors of the cluster executors, importable without a cluster library installed
(``except nbp.ClusterError`` works whether or not Dask is there)."""

from __future__ import annotations

from ..errors import ClusterError

__all__ = ["ClusterError"]
