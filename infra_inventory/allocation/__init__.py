"""Cost allocation, the pure core (DESIGN.md §4): what a cluster-hour cost in hardware and
power, and how that cost is shared among the usage served in it. No Django, no I/O.

Remainder rule: a cluster-hour's hardware and power costs are fixed to micro-dollars
(ROUND_HALF_UP), then each is split among the usage of that hour by largest remainder in
whole micro-dollars (ties to the earlier key). Every share is a whole number of
micro-dollars and the shares sum exactly to the hour's cost, so allocated + idle equals
the total for any period and any grouping.
"""

from infra_inventory.allocation.core import (
    MICRO, TOKEN_CLASSES, Carbon, ClusterHourCost, Deployment, HourAllocation, LeaseTerms, Share, TokenWeights,
    UsageTokens, allocate, allocate_hour, cluster_hour_cost, place, split_largest_remainder, usage_of_counts,
)

__all__ = [
    "MICRO", "TOKEN_CLASSES", "Carbon", "ClusterHourCost", "Deployment", "HourAllocation", "LeaseTerms", "Share",
    "TokenWeights", "UsageTokens", "allocate", "allocate_hour", "cluster_hour_cost", "place", "split_largest_remainder",
    "usage_of_counts",
]
