"""fairshare / drf: dominant resource fairness over cpu, memory and gpu, with per-session weights.

An executor's cost is its dominant share: the largest fraction of the cluster's cpu,
memory or gpu that it takes. Water-filling with ``rate = weight / cost`` equalises the
weighted dominant shares of the sessions that want more.
"""

from __future__ import annotations

from flame.session_manager.scheduler.policies._base import Neutral, Totals
from flame.session_manager.scheduler.snapshot import SessionView


class DrfPolicy(Neutral):
    name = "drf"

    def weight(self, session: SessionView, demand: int) -> float:
        return session.weight

    def cost(self, session: SessionView, totals: Totals) -> float:
        r = session.resreq
        shares = [want / have for want, have in zip((r.cpu, r.memory, r.gpu), totals, strict=True) if have > 0]
        return max(shares, default=1.0) or 1.0
