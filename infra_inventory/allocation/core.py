"""Cluster-hour cost, the split of a cost by weights, and placement by deployment shares."""

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

MICRO = Decimal("0.000001")
HOURS_PER_MONTH = 730  # DESIGN.md §4


@dataclass(frozen=True, slots=True)
class TokenWeights:
    input: Decimal = Decimal(1)
    cached_input: Decimal = Decimal("0.1")
    output: Decimal = Decimal(4)


@dataclass(frozen=True, slots=True)
class UsageTokens:
    """Tokens one key (customer, model, service tier, …) was served in one cluster-hour.
    `input` counts uncached prompt tokens, as the priced class does."""

    key: tuple
    input: int
    cached_input: int
    output: int

    def weighted(self, weights: TokenWeights) -> Decimal:
        return self.input * weights.input + self.cached_input * weights.cached_input + self.output * weights.output


@dataclass(frozen=True, slots=True)
class ClusterHourCost:
    hardware: Decimal  # USD, whole micro-dollars
    power: Decimal
    it_kwh: Decimal  # measured, or the board-power estimate
    energy_kwh: Decimal  # it_kwh × PUE
    estimated: bool

    @property
    def total(self) -> Decimal:
        return self.hardware + self.power


@dataclass(frozen=True, slots=True)
class Share:
    key: tuple
    weighted_tokens: Decimal
    hardware: Decimal
    power: Decimal
    energy_kwh: Decimal


@dataclass(frozen=True, slots=True)
class Deployment:
    cluster: str
    share: Decimal


def cluster_hour_cost(*, accelerators: int, unit_cost: Decimal, amortization_months: int, board_watts: int,
                      measured_it_kwh: Decimal | None, pue: Decimal, price_per_kwh: Decimal) -> ClusterHourCost:
    """hardware = count × unit_cost / (months × 730); power = it_kWh × PUE × price, with
    it_kWh measured, or count × watts / 1000 when no reading exists."""
    hardware = (accelerators * unit_cost / (amortization_months * HOURS_PER_MONTH)).quantize(MICRO, ROUND_HALF_UP)
    estimated = measured_it_kwh is None
    it_kwh = Decimal(accelerators * board_watts) / 1000 if estimated else measured_it_kwh
    energy_kwh = (it_kwh * pue).quantize(MICRO, ROUND_HALF_UP)
    power = (it_kwh * pue * price_per_kwh).quantize(MICRO, ROUND_HALF_UP)
    return ClusterHourCost(hardware=hardware, power=power, it_kwh=it_kwh, energy_kwh=energy_kwh, estimated=estimated)


def split_largest_remainder(total: Decimal, weights: list[Decimal], *, unit: Decimal = MICRO) -> list[Decimal]:
    """Shares of `total` proportional to `weights`, each a whole number of `unit`s, summing
    exactly to `total` (which must itself be whole units). Leftover units go to the largest
    fractional remainders, ties to the earlier weight."""
    units = int(total / unit)
    weight_sum = sum(weights)
    if weight_sum <= 0:
        raise ValueError("weights must sum to more than zero")
    exact = [units * w / weight_sum for w in weights]
    floors = [int(e.to_integral_value(ROUND_FLOOR)) for e in exact]
    leftover = units - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:leftover]:
        floors[i] += 1
    return [f * unit for f in floors]


def allocate(cost: ClusterHourCost, usage: list[UsageTokens], weights: TokenWeights) -> list[Share]:
    """Share one cluster-hour's cost among its usage by weighted tokens. No usage (or only
    zero-weight usage): no shares, the hour is idle."""
    weighted = [u.weighted(weights) for u in usage]
    if not usage or sum(weighted) <= 0:
        return []
    hardware = split_largest_remainder(cost.hardware, weighted)
    power = split_largest_remainder(cost.power, weighted)
    energy = split_largest_remainder(cost.energy_kwh, weighted)
    return [Share(u.key, w, h, p, e) for u, w, h, p, e in zip(usage, weighted, hardware, power, energy)]


def place(usage: UsageTokens, deployments: list[Deployment]) -> list[tuple[str, UsageTokens]]:
    """Usage with no cluster, spread over the model's deployments in its region by share;
    each token class split by largest remainder so no token is lost or invented."""
    shares = [d.share for d in deployments]
    columns = [
        [int(x) for x in split_largest_remainder(Decimal(tokens), shares, unit=Decimal(1))]
        for tokens in (usage.input, usage.cached_input, usage.output)
    ]
    return [
        (d.cluster, UsageTokens(usage.key, columns[0][i], columns[1][i], columns[2][i]))
        for i, d in enumerate(deployments)
    ]
