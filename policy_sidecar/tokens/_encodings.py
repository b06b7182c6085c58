"""Which tiktoken encoding an OpenAI model uses, and per-provider estimation profiles."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from tiktoken.model import encoding_name_for_model

O200K = "o200k_base"
CL100K = "cl100k_base"
LOADED = (CL100K, O200K)


@lru_cache(maxsize=4096)  # a prefix scan of tiktoken's table otherwise, every request
def encoding_for_model(model: str | None) -> str:
    """tiktoken's own (offline) model table; unknown and newer models get o200k_base.

    Fine-tuned ids (``ft:gpt-4o-mini:org::id``) use their base model's encoding. Legacy
    encodings we do not load (r50k/p50k for davinci-era models) fall back to cl100k_base.
    """
    if not model:
        return O200K
    if model.startswith("ft:"):
        model = model[3:].split(":", 1)[0]
    try:
        name = encoding_name_for_model(model)
    except KeyError:
        return O200K
    return name if name in LOADED else CL100K


@dataclass(frozen=True, slots=True)
class Profile:
    """How prompt tokens are estimated for one provider.

    estimate = round(factor * (text tokens + per_message * messages + role tokens))
               + reply_priming (when there are messages) + images * image_tokens
               + pretokenized ids
    """

    # Multiplies the tiktoken count: other vendors' tokenizers split text differently.
    factor: float
    # Chat framing tokens per message, and for the assistant reply that follows.
    per_message: int
    per_name: int
    reply_priming: int
    # Flat tokens per image (size unknown before decoding the image; see docs/providers.md).
    image_tokens: int
    # True: the model's own encoding (OpenAI); False: o200k_base as a proxy tokenizer.
    exact_encoding: bool


PROFILES: dict[str, Profile] = {
    # OpenAI cookbook: 3 per message, +1 with a name, +3 priming; exact for plain text.
    # Image: a 1024x1024 high-detail image = 85 + 4 tiles x 170.
    "openai": Profile(1.0, 3, 1, 3, 765, exact_encoding=True),
    "azure": Profile(1.0, 3, 1, 3, 765, exact_encoding=True),
    # Claude: (width x height) / 750 tokens, capped near 1,600 by resizing.
    "anthropic": Profile(1.10, 3, 0, 3, 1600, exact_encoding=False),
    # Gemini: 258 tokens per image up to 384 px a side (tiled beyond that).
    "gemini": Profile(1.10, 0, 0, 0, 258, exact_encoding=False),
    # Cohere billed_units count only the caller's text, not the prompt template.
    "cohere": Profile(1.15, 0, 0, 0, 765, exact_encoding=False),
}
DEFAULT_PROFILE = Profile(1.20, 3, 0, 3, 1600, exact_encoding=False)
