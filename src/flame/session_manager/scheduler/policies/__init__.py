"""Scheduling policies, selected by name from ``cluster.policies``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from flame.errors import InvalidArgument
from flame.session_manager.scheduler.policies._base import Neutral, Policy, PolicySet, Totals
from flame.session_manager.scheduler.policies.drf import DrfPolicy
from flame.session_manager.scheduler.policies.gang import GangPolicy
from flame.session_manager.scheduler.policies.priority import PriorityPolicy
from flame.session_manager.scheduler.policies.proportion import ProportionPolicy

logger = logging.getLogger(__name__)

# Names accepted in cluster.policies (Flame's names; fairshare and drf are the same policy).
POLICIES: dict[str, Callable[[], Policy]] = {
    "priority": PriorityPolicy,
    "fairshare": DrfPolicy,
    "drf": DrfPolicy,
    "proportion": ProportionPolicy,
    "gang": GangPolicy,
}
DEFAULT_POLICIES = ("priority", "fairshare")


def build_policies(names: Iterable[str]) -> PolicySet:
    """The policies named, in order, each once; unknown names are an error that lists the accepted ones."""
    chosen: list[Policy] = []
    for name in names:
        factory = POLICIES.get(name)
        if factory is None:
            raise InvalidArgument(f"unknown scheduling policy {name!r}; accepted: {', '.join(POLICIES)}")
        policy = factory()
        if any(type(p) is type(policy) for p in chosen):
            continue
        if isinstance(policy, GangPolicy):
            logger.info("scheduling policy 'gang' is accepted for compatibility and has no effect")
        chosen.append(policy)
    return PolicySet(chosen)


__all__ = [
    "DEFAULT_POLICIES",
    "POLICIES",
    "DrfPolicy",
    "GangPolicy",
    "Neutral",
    "Policy",
    "PolicySet",
    "PriorityPolicy",
    "ProportionPolicy",
    "Totals",
    "build_policies",
]
