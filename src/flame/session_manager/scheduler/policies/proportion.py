"""proportion: within a tier, executors in proportion to each session's backlog.

Every session that wants more gets the same fraction of what it asks for, so a session
with ten times the backlog gets ten times the executors (up to its demand).
"""

from __future__ import annotations

from flame.session_manager.scheduler.policies._base import Neutral
from flame.session_manager.scheduler.snapshot import SessionView


class ProportionPolicy(Neutral):
    name = "proportion"

    def weight(self, session: SessionView, demand: int) -> float:
        return float(max(demand, 1))
