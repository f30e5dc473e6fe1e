"""The risk model shared by the VaR client and service: data files, scenarios, revaluation.

Pure Python on purpose (no numpy): the same code prices a block of scenarios on an executor
and, with ``--check``, every scenario in the client, so the two results can be compared bit for bit.

Files (JSON, written by :func:`write_inputs`):

- portfolio: ``{"positions": [{"id", "type": "linear"|"call"|"put", "underlying", "quantity",
  "strike", "maturity"}]}`` (strike and maturity in years only for options);
- market snapshot: ``{"as_of", "rate", "horizon_days", "vol_of_vol", "factors": [{"name", "spot",
  "vol"}], "correlation": [[...]]}``.

A scenario is drawn from ``random.Random(f"{seed}/{index}")`` alone, so any block of scenarios
can be regenerated anywhere: correlated normal shocks move the log spots over the horizon and one
common normal shock scales every implied volatility.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRADING_DAYS = 252
PORTFOLIO_FILE = "portfolio.json"
MARKET_FILE = "market.json"

# (name, spot, implied vol, loading on the common factor that drives the correlations)
_FACTORS = (
    ("SPX", 5460.48, 0.13, 0.80),
    ("SX5E", 4894.02, 0.16, 0.75),
    ("NKY", 39583.08, 0.19, 0.55),
    ("HSI", 17718.61, 0.22, 0.50),
    ("UKX", 8164.12, 0.12, 0.70),
)


@dataclass(frozen=True)
class Factor:
    name: str
    spot: float
    vol: float


@dataclass(frozen=True)
class Market:
    as_of: str
    rate: float
    horizon_days: int
    vol_of_vol: float
    factors: tuple[Factor, ...]
    correlation: tuple[tuple[float, ...], ...]

    @property
    def horizon(self) -> float:
        """The horizon in years."""
        return self.horizon_days / TRADING_DAYS


@dataclass(frozen=True)
class Position:
    id: str
    type: str  # "linear", "call" or "put"
    factor: int  # index into Market.factors
    quantity: float
    strike: float = 0.0
    maturity: float = 0.0  # years


# ---- generating and loading the input files ---------------------------------------------


def generate_market(seed: int) -> dict[str, Any]:
    """A market snapshot; the correlation matrix is one-factor, so it is positive definite."""
    rng = random.Random(seed)
    factors = []
    loadings = []
    for name, spot, vol, loading in _FACTORS:
        factors.append({"name": name, "spot": round(spot * (1 + rng.uniform(-0.02, 0.02)), 2), "vol": vol})
        loadings.append(loading)
    correlation = [[1.0 if i == j else round(a * b, 4) for j, b in enumerate(loadings)] for i, a in enumerate(loadings)]
    return {
        "as_of": "2024-06-28",
        "rate": 0.035,
        "horizon_days": 1,
        "vol_of_vol": 1.2,
        "factors": factors,
        "correlation": correlation,
    }


def generate_portfolio(positions: int, market: dict[str, Any], seed: int) -> dict[str, Any]:
    """``positions`` linear positions and European options on the market's factors."""
    rng = random.Random(seed)
    factors = market["factors"]
    rows: list[dict[str, Any]] = []
    for n in range(positions):
        factor = factors[rng.randrange(len(factors))]
        kind = rng.choice(("linear", "call", "call", "put", "put"))
        row: dict[str, Any] = {"id": f"P{n + 1:05d}", "type": kind, "underlying": factor["name"]}
        if kind == "linear":
            row["quantity"] = float(rng.choice((-1, 1)) * rng.randint(10, 400))
        else:
            row["quantity"] = float(rng.choice((-1, 1)) * rng.randint(10, 200))
            row["strike"] = round(factor["spot"] * rng.uniform(0.8, 1.2), 2)
            row["maturity"] = round(rng.uniform(0.05, 2.0), 4)
        rows.append(row)
    return {"positions": rows}


def write_inputs(directory: Path, positions: int, seed: int) -> tuple[Path, Path]:
    """Write the portfolio and market snapshot files; the same arguments give the same bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    market = generate_market(seed)
    portfolio = generate_portfolio(positions, market, seed + 1)
    portfolio_path = directory / PORTFOLIO_FILE
    market_path = directory / MARKET_FILE
    portfolio_path.write_text(json.dumps(portfolio, indent=1) + "\n")
    market_path.write_text(json.dumps(market, indent=1) + "\n")
    return portfolio_path, market_path


def load_market(path: str | Path) -> Market:
    data = json.loads(Path(path).read_text())
    factors = tuple(Factor(str(f["name"]), float(f["spot"]), float(f["vol"])) for f in data["factors"])
    correlation = tuple(tuple(float(x) for x in row) for row in data["correlation"])
    if len(correlation) != len(factors) or any(len(row) != len(factors) for row in correlation):
        raise ValueError(f"{path}: the correlation matrix must be {len(factors)}x{len(factors)}")
    return Market(
        as_of=str(data["as_of"]),
        rate=float(data["rate"]),
        horizon_days=int(data["horizon_days"]),
        vol_of_vol=float(data["vol_of_vol"]),
        factors=factors,
        correlation=correlation,
    )


def load_portfolio(path: str | Path, market: Market) -> list[Position]:
    index = {factor.name: i for i, factor in enumerate(market.factors)}
    positions = []
    for row in json.loads(Path(path).read_text())["positions"]:
        if row["underlying"] not in index:
            raise ValueError(f"{path}: position {row['id']} is on {row['underlying']!r}, not in the market snapshot")
        if row["type"] not in ("linear", "call", "put"):
            raise ValueError(f"{path}: position {row['id']} has type {row['type']!r}; expected linear, call or put")
        positions.append(
            Position(
                id=str(row["id"]),
                type=str(row["type"]),
                factor=index[row["underlying"]],
                quantity=float(row["quantity"]),
                strike=float(row.get("strike", 0.0)),
                maturity=float(row.get("maturity", 0.0)),
            )
        )
    return positions


# ---- pricing ------------------------------------------------------------------------------


def cholesky(matrix: Sequence[Sequence[float]]) -> list[list[float]]:
    """The lower-triangular L with L L^T = matrix; ValueError if it is not positive definite."""
    size = len(matrix)
    lower = [[0.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i + 1):
            total = matrix[i][j] - sum(lower[i][k] * lower[j][k] for k in range(j))
            if i == j:
                if total <= 0.0:
                    raise ValueError("the correlation matrix is not positive definite")
                lower[i][i] = math.sqrt(total)
            else:
                lower[i][j] = total / lower[j][j]
    return lower


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def option_price(kind: str, spot: float, strike: float, years: float, rate: float, vol: float) -> float:
    """Black-Scholes price of a European call or put (intrinsic value at expiry)."""
    if years <= 0.0:
        return max(spot - strike, 0.0) if kind == "call" else max(strike - spot, 0.0)
    root = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / root
    d2 = d1 - root
    discounted = strike * math.exp(-rate * years)
    if kind == "call":
        return spot * _norm_cdf(d1) - discounted * _norm_cdf(d2)
    return discounted * _norm_cdf(-d2) - spot * _norm_cdf(-d1)


class Revaluer:
    """A loaded portfolio and market: base values once, then P&L per scenario."""

    def __init__(self, portfolio: list[Position], market: Market) -> None:
        self.portfolio = portfolio
        self.market = market
        self._lower = cholesky(market.correlation)
        self._base = [
            self._value(p, market.factors[p.factor].spot, market.factors[p.factor].vol, 0.0) for p in portfolio
        ]

    @classmethod
    def load(cls, portfolio_path: str | Path, market_path: str | Path) -> Revaluer:
        market = load_market(market_path)
        return cls(load_portfolio(portfolio_path, market), market)

    @property
    def base_value(self) -> float:
        return math.fsum(self._base)

    def _value(self, position: Position, spot: float, vol: float, elapsed: float) -> float:
        if position.type == "linear":
            return position.quantity * spot
        years = position.maturity - elapsed
        return position.quantity * option_price(position.type, spot, position.strike, years, self.market.rate, vol)

    def scenario(self, seed: int, index: int) -> tuple[list[float], list[float]]:
        """Spots and vols at the horizon in scenario ``index`` of ``seed`` (a pure function of both)."""
        rng = random.Random(f"{seed}/{index}")
        size = len(self.market.factors)
        normals = [rng.gauss(0.0, 1.0) for _ in range(size)]
        vol_shock = rng.gauss(0.0, 1.0)
        horizon = self.market.horizon
        root_h = math.sqrt(horizon)
        vov = self.market.vol_of_vol
        vol_scale = math.exp(vov * root_h * vol_shock - 0.5 * vov * vov * horizon)
        spots: list[float] = []
        vols: list[float] = []
        for i, factor in enumerate(self.market.factors):
            z = sum(self._lower[i][k] * normals[k] for k in range(i + 1))
            spots.append(factor.spot * math.exp(factor.vol * root_h * z - 0.5 * factor.vol * factor.vol * horizon))
            vols.append(factor.vol * vol_scale)
        return spots, vols

    def pnl(self, seed: int, index: int) -> float:
        """The portfolio's profit (negative: loss) over the horizon in one scenario."""
        spots, vols = self.scenario(seed, index)
        elapsed = self.market.horizon
        changes = [
            self._value(p, spots[p.factor], vols[p.factor], elapsed) - base
            for p, base in zip(self.portfolio, self._base, strict=True)
        ]
        return math.fsum(changes)

    def block(self, first: int, count: int, seed: int) -> list[float]:
        """P&L of scenarios ``first`` .. ``first + count - 1``."""
        return [self.pnl(seed, index) for index in range(first, first + count)]


# ---- risk measures ------------------------------------------------------------------------


def var_es(pnls: Sequence[float], level: float) -> tuple[float, float]:
    """Historical value-at-risk and expected shortfall at ``level`` (e.g. 0.99), as positive losses.

    The tail is the worst ceil((1 - level) * n) scenarios: VaR is the smallest loss in it and
    expected shortfall the mean loss over it.
    """
    if not pnls:
        raise ValueError("no scenarios")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    losses = sorted((-p for p in pnls), reverse=True)
    tail = max(1, math.ceil(round((1.0 - level) * len(losses), 9)))
    worst = losses[:tail]
    return worst[-1], math.fsum(worst) / tail
