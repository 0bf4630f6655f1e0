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

CLASSES = ("input", "cached_input", "cache_write", "cache_write_long", "audio_input", "output", "audio_output")


def priced(tokens: dict[str, int]) -> dict[str, int]:
    """Token class → tokens for one event or one sum of events (any mapping of FIELDS;
    a missing newer field counts 0)."""
    cached = tokens["cached_input_tokens"]
    write, write_long = tokens.get("cache_write_tokens", 0), tokens.get("cache_write_long_tokens", 0)
    audio_in, audio_out = tokens.get("audio_input_tokens", 0), tokens.get("audio_output_tokens", 0)
    return {
        "input": tokens["input_tokens"] - cached - write - write_long - audio_in,
        "cached_input": cached, "cache_write": write, "cache_write_long": write_long, "audio_input": audio_in,
        "output": tokens["output_tokens"] - audio_out, "audio_output": audio_out,
    }


def priced_of_row(row) -> dict[str, int]:
    """`priced` of a sequence of sums in FIELDS order (a SQL row's tail)."""
    return priced(dict(zip(FIELDS, row)))
