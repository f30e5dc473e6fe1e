"""Providers add nodes when the registered ones cannot hold what sessions want.

After every scheduling cycle the loop hands the provider the plan's unmet demand (executors per
session that no registered node could give) and the snapshot the plan was made from;
``reconcile`` returns at once and the provider acts on its own tasks.

- ``none``: nothing is added; executor managers register themselves (``flame executor-manager``).
- ``kubernetes``: executor-manager pods, one node each (``cluster.provider.kubernetes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from flame.config import ClusterConfig
from flame.session_manager.scheduler import Snapshot

if TYPE_CHECKING:
    from flame.session_manager.controller import Controller


class Provider(Protocol):
    async def start(self) -> None: ...

    def reconcile(self, unmet: Mapping[str, int], snapshot: Snapshot) -> None: ...

    async def shutdown(self) -> None: ...


class NoProvider:
    """``cluster.provider: none``."""

    async def start(self) -> None:
        return None

    def reconcile(self, unmet: Mapping[str, int], snapshot: Snapshot) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def build_provider(config: ClusterConfig, controller: Controller) -> Provider:
    if config.provider is None:
        return NoProvider()
    try:
        from flame.session_manager.providers.kubernetes import KubernetesProvider
    except ImportError as exc:
        from flame.errors import InvalidArgument

        raise InvalidArgument(
            "cluster.provider is kubernetes but its client library is not installed: "
            "pip install 'flame-python[kubernetes]'"
        ) from exc
    return KubernetesProvider(config.provider, config.name, controller)


__all__ = ["NoProvider", "Provider", "build_provider"]
