"""`openai.chat`: the `usage` object of an OpenAI Chat Completions response.

`prompt_tokens` counts the whole prompt, cached and audio tokens included;
`completion_tokens` counts everything generated, reasoning and audio included (and
rejected prediction tokens, which are billed as output like the rest). There is no
cache write: OpenAI caches automatically and does not bill the write.

Audio input: `prompt_tokens_details.audio_tokens` counts all audio in the prompt. Our
`audio_input_tokens` is the uncached part, so when the object says how much of the cache
was audio (`cached_tokens_details.audio_tokens`, as the realtime shape does) that is
subtracted; when it does not, all of the audio is taken as uncached, and an object whose
cached + audio tokens then exceed the prompt is refused rather than guessed at.

Streamed: the gateway requests `stream_options: {"include_usage": true}` and passes the
`usage` of the last chunk (the one with empty `choices`); earlier chunks carry `usage: null`.
"""

from metering.provider_usage._read import count, fields, obj, within


def input_parts(details: dict, path: str, prompt: int, prompt_name: str) -> tuple[int, int]:
    """(cached, uncached audio) of an OpenAI input-details object, checked against the prompt."""
    cached = count(details, "cached_tokens", path)
    audio = count(details, "audio_tokens", path)
    cached_path = f"{path}.cached_tokens_details"
    cached_audio = count(obj(details, "cached_tokens_details", path), "audio_tokens", cached_path)
    within(cached, f"{path}.cached_tokens", prompt, prompt_name)
    within(audio, f"{path}.audio_tokens", prompt, prompt_name)
    within(cached_audio, f"{cached_path}.audio_tokens", audio, f"{path}.audio_tokens")
    within(cached_audio, f"{cached_path}.audio_tokens", cached, f"{path}.cached_tokens")
    audio_uncached = audio - cached_audio
    within(cached + audio_uncached, f"{path}.cached_tokens + uncached {path}.audio_tokens", prompt, prompt_name)
    return cached, audio_uncached


def output_parts(details: dict, path: str, output: int, output_name: str) -> tuple[int, int]:
    """(reasoning, audio) of an OpenAI output-details object, each checked against the output."""
    reasoning = count(details, "reasoning_tokens", path)
    audio = count(details, "audio_tokens", path)
    within(reasoning, f"{path}.reasoning_tokens", output, output_name)
    within(audio, f"{path}.audio_tokens", output, output_name)
    return reasoning, audio


def token_fields(usage: dict) -> dict[str, int]:
    prompt = count(usage, "prompt_tokens", "usage", required=True)
    completion = count(usage, "completion_tokens", "usage", required=True)
    cached, audio_input = input_parts(
        obj(usage, "prompt_tokens_details", "usage"), "usage.prompt_tokens_details", prompt, "usage.prompt_tokens")
    reasoning, audio_output = output_parts(
        obj(usage, "completion_tokens_details", "usage"), "usage.completion_tokens_details",
        completion, "usage.completion_tokens")
    return fields(
        input_tokens=prompt, cached_input_tokens=cached, audio_input_tokens=audio_input,
        output_tokens=completion, audio_output_tokens=audio_output, reasoning_tokens=reasoning,
    )
