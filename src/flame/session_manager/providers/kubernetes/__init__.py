"""Executor-manager pods on Kubernetes, made and deleted with the scheduler's unmet demand."""

from flame.session_manager.providers.kubernetes._provider import KubernetesProvider

__all__ = ["KubernetesProvider"]
