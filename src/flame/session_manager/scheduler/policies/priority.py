"""priority: sessions of a higher priority are served before any session of a lower one."""

from __future__ import annotations

from flame.session_manager.scheduler.policies._base import Neutral
from flame.session_manager.scheduler.snapshot import SessionView


class PriorityPolicy(Neutral):
    name = "priority"

    def tier(self, session: SessionView) -> int:
        return session.priority
