"""The provider interface: request parsing and usage extraction, one module per provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Route:
    """What the method and path say about a request, before its body is read."""

    provider: str
    operation: str
    # Gemini and Azure name the model (or deployment) in the path, not the body.
    model_from_path: str | None = None
    stream_from_path: bool = False
    # The API version when the path or query names one: "v1"/"v2" for Cohere, the
    # ``api-version`` query parameter for Azure deployment paths.
    api_version: str | None = None


@dataclass(frozen=True, slots=True)
class PromptMessage:
    """One message of the prompt as the tokenizer sees it."""

    role: str
    text: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The facts policies need from a request body, read once."""

    model: str | None
    stream: bool
    max_output_tokens: int | None
    messages: tuple[PromptMessage, ...] = ()
    # Text that is not a chat message: tool definitions, system prompts given apart,
    # completion prompts, embedding inputs.
    extra_text: tuple[str, ...] = ()
    # Images and other non-text parts, counted with a documented flat estimate.
    image_count: int = 0
    # Inputs given as token ids (OpenAI completions/embeddings accept arrays of ints):
    # their length is the exact count, no tokenizer needed.
    pretokenized_tokens: int = 0
    # Routes billed by another unit than tokens (``providers.units``): the quantity the
    # request itself fixes (characters of speech input, images asked for, one request),
    # or an estimate from the upload (``quantity_estimated``: audio seconds from the
    # file); None when only the response can say. ``price_key`` picks the price among a
    # model's per-unit prices (images: ``"1024x1024/hd"``, size then quality).
    quantity: float | None = None
    quantity_estimated: bool = False
    price_key: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the provider reported it. Totals follow the provider's own totals."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # Anthropic cache writes, inside ``prompt_tokens``: priced at the cache-write
    # premiums (5-minute and 1-hour); 0 for every other provider.
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    # Routes billed by another unit (``providers.units``): that unit, the quantity billed
    # in it (None: the response did not say; the request's quantity applies), whether
    # the quantity is an estimate, and the key of the per-unit price (images: size and
    # quality). ``unit`` None is tokens.
    unit: str | None = None
    quantity: float | None = None
    quantity_estimated: bool = False
    price_key: str | None = None


class RequestError(ValueError):
    """The request body is not what the provider's API accepts (bad JSON, wrong types)."""


class UsageParser(Protocol):
    """Incremental usage extraction from a response body.

    One per response; ``feed`` takes chunks split anywhere; ``finish`` returns the usage
    the response reported, or None when it reported none (errors, cut-short streams).
    Neither method raises on malformed input.
    """

    def feed(self, chunk: bytes) -> None: ...

    def feed_window(self, head: bytes, tail: bytes) -> None:
        """Instead of ``feed``: a body of which only the first bytes (``head``) and the
        last (``tail``) are known, with a gap between them. Events, lines or JSON
        members cut by the gap are skipped; usage in what is whole is still found."""
        ...

    def finish(self) -> Usage | None: ...


class Provider(Protocol):
    """One LLM provider's wire format."""

    name: str

    def match(self, method: str, path: str) -> Route | None:
        """The route for this method and path (path may carry a query), or None."""
        ...

    def parse_request(self, route: Route, body: Mapping[str, Any]) -> ParsedRequest:
        """Read model, stream flag, max tokens and prompt text; RequestError when malformed."""
        ...

    def usage_parser(
        self, route: Route, *, streaming: bool, content_encoding: str | None = None
    ) -> UsageParser:
        """A fresh parser for a response to this route.

        ``streaming`` picks the stream format (SSE, or the provider's own stream framing);
        ``content_encoding`` is the response's ``content-encoding`` header: gzip and deflate
        are decoded incrementally, identity passes through, any other encoding yields a
        parser that reports no usage (never an exception).
        """
        ...

    def error_body(
        self,
        *,
        message: str,
        error_type: str,
        code: str,
        status: int,
        details: Mapping[str, Any],
    ) -> bytes:
        """A JSON error body in this provider's own error shape.

        ``details`` (policy id and name, limit, reset time…) always appears under the key
        ``details`` of the error object (top level for Cohere, whose errors have none).
        """
        ...

    def request_patch(self, route: Route, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Fields to merge into the request body before it goes upstream, or None."""
        ...


_STREAM_TYPES = frozenset(
    {"text/event-stream", "application/stream+json", "application/x-ndjson", "application/jsonl"}
)


def is_streaming_response(route: Route, content_type: str | None) -> bool:
    """Whether to give ``usage_parser`` ``streaming=True`` for this response.

    Streams are recognised by content type (SSE; Cohere v1's newline-delimited JSON), and
    Gemini's ``streamGenerateContent`` without ``alt=sse`` by its path: it streams a JSON
    array as ``application/json``. An error answer to a stream request (JSON) is not a
    stream.
    """
    media = (content_type or "").partition(";")[0].strip().lower()
    if media in _STREAM_TYPES:
        return True
    return route.stream_from_path and media in ("application/json", "")
