"""An event's token fields and the classes they are priced in (DESIGN.md §1). Pure.

An event reports totals and parts: `input_tokens` is every prompt token, and four of
its parts (cached, written to the cache short or long, uncached audio) are priced apart;
`output_tokens` is every generated token, its audio part priced apart, its reasoning
part reported only. The priced classes are disjoint and sum to input + output.
"""

# What an event and an hourly rollup carry, in this order everywhere (stage, ledger, rollups).
FIELDS = (
    "input_tokens", "cached_input_tokens", "output_tokens", "cache_write_tokens", "cache_write_long_tokens",
    "audio_input_tokens", "audio_output_tokens", "reasoning_tokens",
)
# Added by the provider-usage issue: default 0, and left out of an event's digest and
# stored payload while 0, so an event that predates them keeps its identity.
NEWER_FIELDS = FIELDS[3:]
INPUT_PARTS = ("cached_input_tokens", "cache_write_tokens", "cache_write_long_tokens", "audio_input_tokens")

# Each priced class as a reported field minus the parts of it priced apart: the one
# definition, read by `priced` in Python and by `priced_sql` in Postgres.
DERIVATION = {
    "input": ("input_tokens", INPUT_PARTS),
    "cached_input": ("cached_input_tokens", ()),
    "cache_write": ("cache_write_tokens", ()),
    "cache_write_long": ("cache_write_long_tokens", ()),
    "audio_input": ("audio_input_tokens", ()),
    "output": ("output_tokens", ("audio_output_tokens",)),
    "audio_output": ("audio_output_tokens", ()),
}
CLASSES = tuple(DERIVATION)


def priced(tokens: dict[str, int]) -> dict[str, int]:
    """Token class → tokens for one event or one sum of events (any mapping of FIELDS;
    a missing field counts 0)."""
    return {token_class: tokens.get(total, 0) - sum(tokens.get(part, 0) for part in parts)
            for token_class, (total, parts) in DERIVATION.items()}


def priced_sql() -> dict[str, str]:
    """Token class → the SQL expression of it over columns named as FIELDS (a rollup row)."""
    return {token_class: " - ".join((total, *parts)) for token_class, (total, parts) in DERIVATION.items()}


def priced_of_row(row) -> dict[str, int]:
    """`priced` of a sequence of sums in FIELDS order (a SQL row's tail)."""
    return priced(dict(zip(FIELDS, row)))
