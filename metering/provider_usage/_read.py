"""What every adapter shares: the refusal, reading one count, and the checked result.

A count is a JSON integer (a Python int that is not a bool) between 0 and COUNT_MAX.
An optional count that is absent or null reads as 0: providers omit zeros (Gemini's
proto3 JSON) or send nulls (OpenAI, Anthropic). Keys we do not read are never looked
at, so a provider adding a field changes nothing.
"""

COUNT_MAX = 10**12  # per count and per derived field; the same bound as metering.schemas.TOKENS_MAX

INVALID = "provider_usage_invalid"  # not readable: wrong shape, wrong type, out of range
FORMAT_UNKNOWN = "provider_usage_format_unknown"
INCONSISTENT = "provider_usage_inconsistent"  # readable, but a part exceeds its whole

FIELD_NAMES = (
    "input_tokens", "cached_input_tokens", "output_tokens", "cache_write_tokens",
    "cache_write_long_tokens", "audio_input_tokens", "audio_output_tokens", "reasoning_tokens",
)
_MISSING = object()


class UsageUnreadable(ValueError):
    """The provider usage object cannot be mapped to token fields.

    `reason` is a stable snake_case code (INVALID, FORMAT_UNKNOWN, INCONSISTENT); `message`
    is human text naming the field at fault, e.g. `usage.prompt_tokens_details.cached_tokens`.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def obj(parent: dict, key: str, path: str) -> dict:
    """An optional nested object: {} when absent or null."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageUnreadable(INVALID, f"{path}.{key} must be an object, got {_shown(value)}.")
    return value


def items(parent: dict, key: str, path: str) -> list:
    """An optional array: [] when absent or null."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise UsageUnreadable(INVALID, f"{path}.{key} must be an array, got {_shown(value)}.")
    return value


def count(parent: dict, key: str, path: str, *, required: bool = False) -> int:
    value = parent.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise UsageUnreadable(INVALID, f"{path}.{key} is missing.")
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageUnreadable(INVALID, f"{path}.{key} must be a non-negative integer, got {_shown(value)}.")
    if not 0 <= value <= COUNT_MAX:
        raise UsageUnreadable(INVALID, f"{path}.{key} must be between 0 and {COUNT_MAX}, got {value}.")
    return value


def within(part: int, part_name: str, whole: int, whole_name: str) -> None:
    if part > whole:
        raise UsageUnreadable(INCONSISTENT, f"{part_name} ({part}) exceeds {whole_name} ({whole}).")


def fields(**values: int) -> dict[str, int]:
    """The eight token fields, after the rules of DESIGN.md §1.

    Adapters check each part against its whole with the provider's own names first;
    this is the backstop that no adapter can return an event the validator would refuse.
    """
    result = {name: values.get(name, 0) for name in FIELD_NAMES}
    assert set(values) <= set(FIELD_NAMES), f"unknown token fields {set(values) - set(FIELD_NAMES)}"
    for name, value in result.items():
        if value > COUNT_MAX:
            raise UsageUnreadable(INVALID, f"The derived {name} ({value}) exceeds {COUNT_MAX}.")
    input_parts = (result["cached_input_tokens"] + result["cache_write_tokens"]
                   + result["cache_write_long_tokens"] + result["audio_input_tokens"])
    within(input_parts, "cached + cache write + uncached audio input tokens", result["input_tokens"], "input tokens")
    within(result["audio_output_tokens"], "audio output tokens", result["output_tokens"], "output tokens")
    within(result["reasoning_tokens"], "reasoning tokens", result["output_tokens"], "output tokens")
    return result
