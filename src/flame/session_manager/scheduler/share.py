"""Fair shares by water-filling: split a pool of resources among claims, in O(n log n).

Each claim asks for between ``lo`` and ``hi`` executors, each executor needing ``need``
(cpu, memory, gpu, 1). A common water level ``L`` gives every claim ``clamp(L * rate,
lo, hi)`` executors. With ``rate = weight / dominant share of one executor`` that is
weighted dominant resource fairness (DRF); with ``rate = 1`` it is max-min fairness in
executor counts. The level rises until some resource runs out; claims that need that
resource stop there and the others go on rising (progressive filling), so a session
that needs no gpu is not held back by gpus running out. The fractional result is then
rounded down to whole executors; leftover room goes one executor at a time to the claims
furthest behind (lowest level, as progressive filling would), and among equals to the one
already holding more (so shares do not flip between cycles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flame.session_manager.scheduler.capacity import Pool

DIMS = 4  # cpu, memory, gpu, executor count
_REL = 1e-12
_ABS = 1e-9


@dataclass(slots=True)
class Claim:
    key: str
    lo: int  # guaranteed first (min_instances), if the pool allows
    hi: int  # never more (demand, max_instances)
    rate: float  # executors per unit of water level: weight / cost of one executor
    need: tuple[float, float, float, float]  # of one executor: cpu, memory, gpu, 1
    held: int = 0  # executors it holds now: breaks ties when rounding, to keep shares stable
    rank: tuple[int, str] = (0, "")  # last tie-break: (creation time, id)


def _limits(pool: Pool) -> list[float]:
    """``pool`` with a little slack, so float sums that equal it are not taken for more."""
    return [p + abs(p) * _REL + _ABS for p in pool]


def _fits(need: tuple[float, float, float, float], limits: list[float]) -> bool:
    return need[0] <= limits[0] and need[1] <= limits[1] and need[2] <= limits[2] and need[3] <= limits[3]


def split(claims: list[Claim], pool: Pool) -> tuple[dict[str, float], dict[str, int]]:
    """Fractional and whole executor counts per claim; ``pool`` is reduced by the whole counts."""
    if not claims:
        return {}, {}
    mins = [sum(c.lo * c.need[k] for c in claims) for k in range(DIMS)]
    if not _fits((mins[0], mins[1], mins[2], mins[3]), _limits(pool)):
        whole = _greedy_minimums(claims, pool)
        return {k: float(v) for k, v in whole.items()}, whole
    level = {c.key: float(c.lo) for c in claims}
    free = [pool[k] - mins[k] for k in range(DIMS)]
    growing = [c for c in claims if c.hi > c.lo]
    while growing:
        hit = _sweep([(level[c.key], c) for c in growing], free)
        top = math.inf if hit is None else hit[0]
        for c in growing:
            old = level[c.key]
            new = min(max(top * c.rate, old), float(c.hi))
            if new != old:
                for k in range(DIMS):
                    free[k] -= (new - old) * c.need[k]
                level[c.key] = new
        if hit is None:
            break
        full = hit[1]
        growing = [c for c in growing if level[c.key] < c.hi and not any(c.need[k] > 0 for k in full)]
    return level, _round(claims, level, pool)


def _sweep(items: list[tuple[float, Claim]], free: list[float]) -> tuple[float, set[int]] | None:
    """The water level at which the first resources run out, and which; None if all claims fit."""
    events: list[tuple[float, int, int]] = []
    for i, (lo, c) in enumerate(items):
        events.append((lo / c.rate, 1, i))  # starts rising
        events.append((c.hi / c.rate, 0, i))  # saturated
    events.sort()
    limits = _limits(free)
    const = [0.0] * DIMS  # usage above the starting levels is const + level * slope
    slope = [0.0] * DIMS
    dims = range(DIMS)
    for at, starts, i in events:
        for k in dims:
            if slope[k] > 0 and const[k] + at * slope[k] > limits[k]:
                crossings = {d: (free[d] - const[d]) / slope[d] for d in dims if slope[d] > 0}
                level = min(crossings.values())
                return level, {d for d, v in crossings.items() if v <= level + abs(level) * 1e-9 + _ABS}
        lo, c = items[i]
        rate, need = c.rate, c.need
        for k in dims:
            if need[k]:
                if starts:
                    slope[k] += rate * need[k]
                    const[k] -= lo * need[k]
                else:
                    slope[k] -= rate * need[k]
                    const[k] += c.hi * need[k]
    return None


def _round(claims: list[Claim], level: dict[str, float], pool: Pool) -> dict[str, int]:
    whole = {c.key: min(c.hi, int(level[c.key] + 1e-6)) for c in claims}
    for k in range(DIMS):
        pool[k] -= sum(whole[c.key] * c.need[k] for c in claims)
    # Leftover room, one executor at a time, to the claims furthest behind.
    # A claim that does not fit now never will (the pool only shrinks), so each pass is shorter.
    candidates = [c for c in claims if whole[c.key] < c.hi]
    candidates.sort(key=lambda c: (whole[c.key] / c.rate, -c.held, c.rank))
    limits = _limits(pool)
    while candidates:
        again = []
        for c in candidates:
            if _fits(c.need, limits):
                whole[c.key] += 1
                for k in range(DIMS):
                    pool[k] -= c.need[k]
                limits = _limits(pool)
                if whole[c.key] < c.hi:
                    again.append(c)
        candidates = again
    return whole


def _greedy_minimums(claims: list[Claim], pool: Pool) -> dict[str, int]:
    """The pool cannot hold every minimum: give minimums in turn, holders and elders first."""
    whole = {}
    for c in sorted(claims, key=lambda c: (-c.held, c.rank)):
        n = c.lo
        for k in range(DIMS):
            if c.need[k] > 0 and pool[k] != math.inf:
                n = min(n, int(max(pool[k], 0.0) / c.need[k] + 1e-9))
        whole[c.key] = n
        for k in range(DIMS):
            pool[k] -= n * c.need[k]
    return whole
