"""A real local cluster for tests: ``with LocalCluster() as cluster: ...``.

The session manager runs on a background thread of this process, the executor
manager as a child process, and services as their own processes, exactly as in
``flame up``; only the storage defaults to memory and the port to a free one.
"""

from flame.testing._cluster import LocalCluster

__all__ = ["LocalCluster"]
