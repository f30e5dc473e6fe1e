"""gang: accepted in ``cluster.policies`` for Flame compatibility; it has no effect yet.

Flame's gang policy places all of a job's minimum at once or nothing. Sessions here start
working with their first executor, so it is a no-op; the scheduler logs a note when it is
configured.
"""

from __future__ import annotations

from flame.session_manager.scheduler.policies._base import Neutral


class GangPolicy(Neutral):
    name = "gang"
