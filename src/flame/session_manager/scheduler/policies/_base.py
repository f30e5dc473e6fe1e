"""The policy protocol: how one scheduling policy shapes fair shares.

A plan splits the cluster among sessions in two steps, and each policy may take part in
both: sessions are grouped into tiers (a higher tier is served in full before a lower
one gets anything), then each tier's room is split by water-filling, where a session
gains ``weight / cost`` executors per unit of water level. A policy that has no say in a
step returns the neutral value (tier 0, weight 1, cost 1); the set of configured policies
combines them (tiers compare in the configured order; weights and costs multiply).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from flame.session_manager.scheduler.snapshot import SessionView

# Everything the ready nodes offer: cpu, memory, gpu.
Totals = tuple[int, int, int]


class Policy(Protocol):
    name: str

    def tier(self, session: SessionView) -> int:
        """Higher tiers are served first; 0 when the policy does not tier."""
        ...

    def weight(self, session: SessionView, demand: int) -> float:
        """Relative share within a tier; 1.0 when the policy does not weigh."""
        ...

    def cost(self, session: SessionView, totals: Totals) -> float:
        """What one executor of the session costs against the cluster; 1.0 to count executors.

        It may depend on the session's resreq and the totals only: a plan asks once per shape.
        """
        ...


class Neutral:
    """Neutral answers, for policies to override what they decide."""

    name = "neutral"

    def tier(self, session: SessionView) -> int:
        return 0

    def weight(self, session: SessionView, demand: int) -> float:
        return 1.0

    def cost(self, session: SessionView, totals: Totals) -> float:
        return 1.0


class PolicySet:
    """The configured policies, combined."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = tuple(policies)
        self._tiering = tuple(p for p in self.policies if type(p).tier is not Neutral.tier)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.policies)

    def tier(self, session: SessionView) -> tuple[int, ...]:
        return tuple(p.tier(session) for p in self._tiering)

    def weight(self, session: SessionView, demand: int) -> float:
        weight = 1.0
        for p in self.policies:
            weight *= p.weight(session, demand)
        return max(weight, 1e-9)

    def cost(self, session: SessionView, totals: Totals) -> float:
        cost = 1.0
        for p in self.policies:
            cost *= p.cost(session, totals)
        return max(cost, 1e-12)
