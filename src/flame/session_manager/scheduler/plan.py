"""Scheduling: a pure function from a Snapshot to a Decision, shaped by pluggable policies.

One cycle, in one pass over the cluster (no per-session ticks: every session's target is
computed together and acted on at once):

1. Release what no one needs: executors of closed sessions, executors idle past their
   session's delay_release (min_instances stay).
2. Fair shares: sessions are grouped into tiers (priority policy); each tier in turn gets
   what the higher tiers left, split by water-filling with the policies' weights and
   costs (DRF by default). A session asks for its backlog, within min/max instances.
3. Serve every share at once: warm idle executors first, then new ones on the node with
   the most room; node resources, node slots and the cluster limit are never exceeded.
   Room left over goes to sessions that still want more (work conservation).
4. Rebalance: if the cluster is full and a session is owed its share, sessions above
   theirs unbind executors after their current tasks (bounded, with hysteresis).
5. Release idle executors past the idle grace; report sessions that fit no node.
6. Report what no registered node could give: executors each session still wants after
   this cycle (a provider turns them into nodes, e.g. Kubernetes pods).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flame.session_manager.scheduler.allocate import Allocator, Want
from flame.session_manager.scheduler.capacity import Pool, Room
from flame.session_manager.scheduler.index import ClusterIndex, IdlePool
from flame.session_manager.scheduler.policies import DEFAULT_POLICIES, PolicySet, build_policies
from flame.session_manager.scheduler.preempt import rebalance
from flame.session_manager.scheduler.release import make_room, release_idle, unbind_unneeded
from flame.session_manager.scheduler.share import Claim, split
from flame.session_manager.scheduler.snapshot import Decision, SessionView, Snapshot
from flame.types import ResourceRequirement


@dataclass(frozen=True)
class SchedulerSettings:
    # Most executors unbound per cycle to rebalance; None: a tenth of the cluster's executors,
    # at least 8. 0 turns rebalancing off (owed sessions wait for executors to be released).
    max_preemptions: int | None = None


class Scheduler:
    """Built once from the configured policy names; ``plan`` is pure and may run on any snapshot."""

    def __init__(self, policies: Iterable[str] = DEFAULT_POLICIES, settings: SchedulerSettings | None = None) -> None:
        self.policies: PolicySet = build_policies(policies)
        self.settings = settings or SchedulerSettings()

    def plan(self, snapshot: Snapshot) -> Decision:
        decision = Decision()
        actions = decision.actions
        sessions = {s.id: s for s in snapshot.sessions}
        index = ClusterIndex(snapshot)
        room = Room(snapshot.nodes, index.used, snapshot.max_executors, index.total)
        unbind_unneeded(snapshot, sessions, index, actions)

        schedulable = []
        homeless: list[tuple[str, int]] = []  # sessions no node can hold, with what they want
        for s in snapshot.sessions:
            if not (s.open and s.schedulable):
                continue
            if not room.fits_anywhere(s.resreq):
                missing = s.demand(index.busy.get(s.id, 0)) - index.held.get(s.id, 0)
                if missing > 0:
                    homeless.append((s.id, missing))
                    if room.allocatable:
                        decision.unplaceable[s.id] = (
                            f"no node can hold an executor of {s.resreq}; largest node: {room.largest()}"
                        )
                continue
            schedulable.append(s)
        wants = self._shares(schedulable, index, room.pool())
        decision.entitlements = {w.session.id: w.share for w in wants}

        idle = IdlePool(index.idle)
        allocator = Allocator(idle, room, actions)
        short = allocator.shares(wants)
        allocator.spare(wants, below=min((w.rank for w in short), default=len(wants)))
        leftover = make_room(
            [(w.session.resreq, w.target - w.have) for w in short], idle.remaining(), room, index, actions
        )
        rebalance(wants, index, room, self._preemption_limit(index.total), actions)
        release_idle(snapshot, leftover, actions)
        decision.unmet = _unmet(wants, homeless, room.cluster_left)
        return decision

    def _shares(self, sessions: list[SessionView], index: ClusterIndex, pool: Pool) -> list[Want]:
        """Every session's fair share, tier by tier; returned in serving order."""
        totals = (int(pool[0]), int(pool[1]), int(pool[2]))
        policies = self.policies
        costs: dict[ResourceRequirement, float] = {}
        tiers: dict[tuple[int, ...], list[tuple[SessionView, Claim]]] = {}
        for s in sessions:
            held = index.held.get(s.id, 0)
            # Idle executors are not wanted: they keep their session (delay_release) only while
            # no one is owed them, so a session winding down does not hold back one with a backlog.
            demand = s.demand(index.busy.get(s.id, 0))
            if demand == 0 and held == 0:
                continue
            r = s.resreq
            cost = costs.get(r)
            if cost is None:
                cost = costs[r] = policies.cost(s, totals)
            claim = Claim(
                key=s.id,
                # One executor for every session with work before a second for any (when the
                # cluster has room for that), so a costly shape is not rounded down to nothing.
                lo=min(max(s.min_instances, 1), demand),
                hi=demand,
                rate=policies.weight(s, demand) / cost,
                need=(float(r.cpu), float(r.memory), float(r.gpu), 1.0),
                held=held,
                rank=(s.creation_time, s.id),
            )
            tiers.setdefault(policies.tier(s), []).append((s, claim))
        wants: list[Want] = []
        for rank, tier in enumerate(sorted(tiers, reverse=True)):
            members = tiers[tier]
            shares, whole = split([c for _, c in members], pool)
            for s, c in members:
                wants.append(Want(s, rank, c.hi, shares[c.key], whole[c.key], c.held, c.rate))
        # Within a tier, sessions whose executors fit fewer nodes (gpus) are placed first.
        wants.sort(key=lambda w: (w.rank, w.session.resreq.gpu == 0, w.level, w.session.creation_time, w.session.id))
        return wants

    def _preemption_limit(self, executors: int) -> int:
        limit = self.settings.max_preemptions
        return max(8, executors // 10) if limit is None else limit


def _unmet(wants: list[Want], homeless: list[tuple[str, int]], cluster_left: int | None) -> dict[str, int]:
    """Executors each session could use beyond what it holds and was given this cycle.

    In serving order (sessions that fit no node last), within what the cluster-wide executor
    limit still allows: a node added for more would stay empty.
    """
    unmet: dict[str, int] = {}
    left = cluster_left
    for sid, missing in [(w.session.id, w.demand - w.have) for w in wants] + homeless:
        if left is not None:
            missing = min(missing, left)
            left -= max(missing, 0)
        if missing > 0:
            unmet[sid] = missing
    return unmet


_DEFAULT = Scheduler()


def plan(snapshot: Snapshot, policies: Sequence[str] | None = None) -> Decision:
    """Plan one cycle with ``policies`` (default: priority, then fair share)."""
    scheduler = _DEFAULT if policies is None else Scheduler(policies)
    return scheduler.plan(snapshot)
