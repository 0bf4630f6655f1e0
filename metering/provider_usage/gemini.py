"""`gemini`: the `usageMetadata` object of a Gemini (Gemini API or Vertex AI) response.

`usage` is the usageMetadata object itself, camelCase as on the wire. Meanings:
- `promptTokenCount` is the whole prompt, `cachedContentTokenCount` included;
- `toolUsePromptTokenCount` (results of tool executions fed back to the model) is not
  in `promptTokenCount` (`totalTokenCount` adds it apart) and is billed as input, so it
  is added to input_tokens;
- `thoughtsTokenCount` is not in `candidatesTokenCount` and is billed as output: output
  is candidates + thoughts, reasoning is thoughts;
- the Live API spells the candidates `responseTokenCount` / `responseTokensDetails`;
  either spelling is read, both at once is refused.
Audio comes from the per-modality lists: uncached audio input is AUDIO of
`promptTokensDetails` minus AUDIO of `cacheTokensDetails`, plus AUDIO of
`toolUsePromptTokensDetails`; audio output is AUDIO of the candidates' details.
`totalTokenCount` is not read. Counts are omitted when zero (proto3 JSON), so only
`promptTokenCount` is required; it is what tells a usageMetadata from another object.

Streamed: every chunk carries usageMetadata with running totals; the gateway passes the
last chunk's. Summing the chunks counts the prompt once per chunk.
"""

from metering.provider_usage._read import INVALID, UsageUnreadable, count, fields, items, within


def _audio(usage: dict, key: str) -> int:
    """AUDIO tokens of a [{modality, tokenCount}] list; every entry is checked."""
    audio = 0
    for index, entry in enumerate(items(usage, key, "usage")):
        path = f"usage.{key}[{index}]"
        if not isinstance(entry, dict):
            raise UsageUnreadable(INVALID, f"{path} must be an object.")
        modality = entry.get("modality")
        if modality is not None and not isinstance(modality, str):
            raise UsageUnreadable(INVALID, f"{path}.modality must be a string.")
        tokens = count(entry, "tokenCount", path)
        if modality == "AUDIO":
            audio += tokens
    return audio


def _spelling(usage: dict, candidates_key: str, live_key: str) -> str:
    if usage.get(candidates_key) is not None and usage.get(live_key) is not None:
        raise UsageUnreadable(INVALID, f"usage carries both {candidates_key} and {live_key}.")
    return live_key if usage.get(live_key) is not None else candidates_key


def token_fields(usage: dict) -> dict[str, int]:
    if "promptTokenCount" not in usage and "usageMetadata" in usage:
        raise UsageUnreadable(INVALID, "usage is a whole response: pass its usageMetadata as usage.")
    prompt = count(usage, "promptTokenCount", "usage", required=True)
    cached = count(usage, "cachedContentTokenCount", "usage")
    tool_prompt = count(usage, "toolUsePromptTokenCount", "usage")
    candidates_key = _spelling(usage, "candidatesTokenCount", "responseTokenCount")
    candidates = count(usage, candidates_key, "usage")
    thoughts = count(usage, "thoughtsTokenCount", "usage")
    within(cached, "usage.cachedContentTokenCount", prompt, "usage.promptTokenCount")

    prompt_audio = _audio(usage, "promptTokensDetails")
    cache_audio = _audio(usage, "cacheTokensDetails")
    tool_audio = _audio(usage, "toolUsePromptTokensDetails")
    details_key = _spelling(usage, "candidatesTokensDetails", "responseTokensDetails")
    output_audio = _audio(usage, details_key)
    within(prompt_audio, "AUDIO of usage.promptTokensDetails", prompt, "usage.promptTokenCount")
    within(cache_audio, "AUDIO of usage.cacheTokensDetails", cached, "usage.cachedContentTokenCount")
    within(cache_audio, "AUDIO of usage.cacheTokensDetails", prompt_audio, "AUDIO of usage.promptTokensDetails")
    within(cached + prompt_audio - cache_audio, "usage.cachedContentTokenCount + uncached AUDIO of the prompt",
           prompt, "usage.promptTokenCount")
    within(tool_audio, "AUDIO of usage.toolUsePromptTokensDetails", tool_prompt, "usage.toolUsePromptTokenCount")
    within(output_audio, f"AUDIO of usage.{details_key}", candidates, f"usage.{candidates_key}")
    return fields(
        input_tokens=prompt + tool_prompt, cached_input_tokens=cached,
        audio_input_tokens=prompt_audio - cache_audio + tool_audio,
        output_tokens=candidates + thoughts, audio_output_tokens=output_audio, reasoning_tokens=thoughts,
    )
