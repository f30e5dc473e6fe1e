"""Why a service could not be used."""

from __future__ import annotations

from flame.errors import FlameError


class ShimError(FlameError):
    """The service could not be started, entered or called; ``message`` is meant for users."""


class ServiceLost(ShimError):
    """The service died or hung up during a call: the executor must be torn down, the task retried."""


__all__ = ["ServiceLost", "ShimError"]
