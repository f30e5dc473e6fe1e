"""The provider's label names, as tests look pods up by them."""

from flame.session_manager.providers.kubernetes._pods import LABEL_APPLICATION, LABEL_CLUSTER, LABEL_SESSION

__all__ = ["LABEL_APPLICATION", "LABEL_CLUSTER", "LABEL_SESSION"]
