"""Cluster-hour cost (owned or leased) and emissions, the split of a cost by weights, the
allocation of a rented hour, and placement by deployment shares."""

from dataclasses import KW_ONLY, dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from metering.token_classes import CLASSES  # pure, like this package

MICRO = Decimal("0.000001")
HOURS_PER_MONTH = 730  # DESIGN.md §4


# The priced token classes, disjoint: a key's tokens are their sum. Reasoning is not among
# them: it is part of the output it was generated as.
TOKEN_CLASSES = CLASSES


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenWeights:
    """What a token of each class weighs when a cluster-hour's cost is shared, relative to an
    uncached text prompt token: the accelerator time it takes and the memory it holds. The
    defaults: a cached token skips prefill (0.1); a cache write is a full prefill whose KV
    blocks are then kept for ≈5 min (1.25) or ≈1 h (2); audio runs an encoder before the model,
    or a codec decoder after it, at realtime latency with small batches (2 in, 8 out); a text
    output token is one decode step (4). Each SKU may set its own (HardwareSku.weight_*)."""

    input: Decimal = Decimal(1)
    cached_input: Decimal = Decimal("0.1")
    cache_write: Decimal = Decimal("1.25")
    cache_write_long: Decimal = Decimal(2)
    audio_input: Decimal = Decimal(2)
    output: Decimal = Decimal(4)
    audio_output: Decimal = Decimal(8)


@dataclass(frozen=True, slots=True)
class UsageTokens:
    """Tokens one key (customer, model, service tier, …) was served in one cluster-hour, per
    priced class (so `input` counts only the prompt tokens no other class covers, `output`
    only the text ones), and `reasoning`, the part of output + audio_output spent reasoning:
    reported, weighted as the output it is part of."""

    key: tuple
    _: KW_ONLY
    input: int = 0
    cached_input: int = 0
    cache_write: int = 0
    cache_write_long: int = 0
    audio_input: int = 0
    output: int = 0
    audio_output: int = 0
    reasoning: int = 0

    @property
    def tokens(self) -> int:
        return (self.input + self.cached_input + self.cache_write + self.cache_write_long + self.audio_input
                + self.output + self.audio_output)

    def counts(self) -> tuple[int, ...]:
        """The classes in TOKEN_CLASSES order, then reasoning."""
        return (self.input, self.cached_input, self.cache_write, self.cache_write_long, self.audio_input, self.output,
                self.audio_output, self.reasoning)

    def weighted(self, weights: TokenWeights) -> Decimal:
        # Spelled out rather than looped over TOKEN_CLASSES: a month's allocation weighs
        # over a million of these.
        return (self.input * weights.input + self.cached_input * weights.cached_input
                + self.cache_write * weights.cache_write + self.cache_write_long * weights.cache_write_long
                + self.audio_input * weights.audio_input + self.output * weights.output
                + self.audio_output * weights.audio_output)


def usage_of_counts(key: tuple, counts) -> UsageTokens:
    """The inverse of UsageTokens.counts."""
    i, c, w, wl, ai, o, ao, r = counts
    return UsageTokens(key, input=i, cached_input=c, cache_write=w, cache_write_long=wl, audio_input=ai, output=o,
                       audio_output=ao, reasoning=r)


@dataclass(frozen=True, slots=True)
class ClusterHourCost:
    hardware: Decimal  # USD, whole micro-dollars
    power: Decimal
    it_kwh: Decimal  # measured, or the board-power estimate
    energy_kwh: Decimal  # it_kwh × PUE
    estimated: bool
    emissions_kg_co2e: Decimal = Decimal(0)  # whole milligrams: grid (facility kWh × intensity) + embodied share

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
    emissions_kg_co2e: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """The lease in force at an hour: what a leased cluster pays per accelerator-hour."""

    price_per_accelerator_hour: Decimal
    includes_power: bool = False


@dataclass(frozen=True, slots=True)
class Carbon:
    """The grid's intensity in force at the datacenter, and the SKU's embodied footprint per
    accelerator (amortized over the SKU's amortization months, like its cost)."""

    g_co2e_per_kwh: Decimal = Decimal(0)
    embodied_kg_co2e: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Deployment:
    cluster: str
    share: Decimal


def cluster_hour_cost(*, accelerators: int, unit_cost: Decimal, amortization_months: int, board_watts: int,
                      measured_it_kwh: Decimal | None, pue: Decimal, price_per_kwh: Decimal,
                      lease: LeaseTerms | None = None, carbon: Carbon = Carbon()) -> ClusterHourCost:
    """hardware = count × unit_cost / (months × 730) when owned, count × the lease's price when
    leased; power = it_kWh × PUE × price (0 when the lease includes power), with it_kWh
    measured, or count × watts / 1000 when no reading exists; emissions = it_kWh × PUE ×
    intensity / 1000 + count × embodied / (months × 730), in kg. Each fixed once, half up, to
    micro-dollars, micro-kWh and milligrams."""
    if lease is None:
        hardware = accelerators * unit_cost / (amortization_months * HOURS_PER_MONTH)
    else:
        hardware = accelerators * lease.price_per_accelerator_hour
    estimated = measured_it_kwh is None
    it_kwh = Decimal(accelerators * board_watts) / 1000 if estimated else measured_it_kwh
    energy_kwh = (it_kwh * pue).quantize(MICRO, ROUND_HALF_UP)
    power = Decimal(0) if lease is not None and lease.includes_power else it_kwh * pue * price_per_kwh
    emissions = (it_kwh * pue * carbon.g_co2e_per_kwh / 1000
                 + accelerators * carbon.embodied_kg_co2e / (amortization_months * HOURS_PER_MONTH))
    return ClusterHourCost(hardware=hardware.quantize(MICRO, ROUND_HALF_UP), power=power.quantize(MICRO, ROUND_HALF_UP),
                           it_kwh=it_kwh, energy_kwh=energy_kwh, estimated=estimated,
                           emissions_kg_co2e=emissions.quantize(MICRO, ROUND_HALF_UP))


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
    emissions = split_largest_remainder(cost.emissions_kg_co2e, weighted) if cost.emissions_kg_co2e else \
        [Decimal(0)] * len(usage)
    return [Share(u.key, w, h, p, e, m)
            for u, w, h, p, e, m in zip(usage, weighted, hardware, power, energy, emissions)]


@dataclass(frozen=True, slots=True)
class HourAllocation:
    shares: list[Share]  # the usage's shares; they sum to the hour's cost unless the hour is idle
    reserved_idle: Share | None  # a rented hour its renter served nothing in: the whole cost, the renter's
    refused: list[UsageTokens]  # other customers' usage on a rented cluster: no share, reported


def allocate_hour(cost: ClusterHourCost, usage: list[UsageTokens], weights: TokenWeights, *,
                  rented_to: str | None = None) -> HourAllocation:
    """One cluster-hour. Not rented: `allocate`, idle when nothing weighs. Rented (DESIGN.md
    §4): the hour is the renter's (a usage key's customer is key[0]); its usage shares the whole
    cost as usual, and when it served nothing that weighs, the whole cost is its reserved idle
    (key `(renter, "", "")`, no tokens). Other customers' usage is refused. Either way
    Σ shares + reserved idle + fleet idle = the hour's cost, exactly."""
    if rented_to is None:
        return HourAllocation(allocate(cost, usage, weights), None, [])
    own = [u for u in usage if u.key[0] == rented_to]
    refused = [u for u in usage if u.key[0] != rented_to]
    shares = allocate(cost, own, weights)
    if shares:
        return HourAllocation(shares, None, refused)
    idle = Share((rented_to, "", ""), Decimal(0), cost.hardware, cost.power, cost.energy_kwh, cost.emissions_kg_co2e)
    return HourAllocation([], idle, refused)


def place(usage: UsageTokens, deployments: list[Deployment]) -> list[tuple[str, UsageTokens]]:
    """Usage with no cluster, spread over the model's deployments in its region by share;
    each token class split by largest remainder so no token is lost or invented. Reasoning
    is split in proportion to the output parts, never by share: a part of a largest-remainder
    split is at most the ceiling of its exact share, which is at most the output part it
    belongs to, so no deployment gets more reasoning than output."""
    shares = [d.share for d in deployments]
    columns = [  # most usage has no tokens in most classes: nothing to split there
        [int(x) for x in split_largest_remainder(Decimal(tokens), shares, unit=Decimal(1))] if tokens
        else [0] * len(deployments)
        for tokens in usage.counts()[:-1]
    ]
    outputs = [Decimal(o + ao) for o, ao in zip(columns[5], columns[6])]
    if usage.reasoning:
        columns.append([int(x) for x in split_largest_remainder(Decimal(usage.reasoning), outputs, unit=Decimal(1))])
    else:
        columns.append([0] * len(deployments))
    return [(d.cluster, usage_of_counts(usage.key, [column[i] for column in columns]))
            for i, d in enumerate(deployments)]
