"""``multipart/form-data`` request bodies (OpenAI image edits, audio transcriptions).

RFC 7578: parts separated by ``--boundary`` lines, each with a
``Content-Disposition: form-data; name="…"[; filename="…"]`` header. Text fields
become strings; file parts become `UploadedFile` (name, type, size and the first bytes,
enough to read an audio header), so a 25 MB upload is never copied into the parsed
form. Failures are ``RequestError`` (a 400), never another exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any, TypeGuard

from policy_sidecar.providers.base import RequestError

__all__ = ["MAX_PARTS", "UploadedFile", "boundary_of", "is_form", "parse_form", "replace_field"]

#: More parts than any real request has (an image edit sends a handful).
MAX_PARTS = 256
#: A text field longer than this is refused (prompts are at most 32,000 characters).
MAX_FIELD_BYTES = 1024 * 1024
#: How much of a file is kept for header sniffing (a WAV header is 44 bytes).
HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file part: never its whole content, only its size and first bytes."""

    filename: str
    content_type: str
    size: int
    head: bytes


def is_form(content_type: str | None) -> TypeGuard[str]:
    return (content_type or "").partition(";")[0].strip().lower() == "multipart/form-data"


def boundary_of(content_type: str) -> str:
    message = Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 70:
        raise RequestError("multipart/form-data needs a boundary of 1 to 70 characters")
    return boundary


def _disposition(header_block: bytes) -> tuple[str, str | None, str]:
    """(name, filename or None, content type) of one part's headers."""
    message = Message()
    for line in header_block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            message[name.strip()] = value.strip()
    if message.get_content_disposition() != "form-data":
        raise RequestError("every multipart part needs Content-Disposition: form-data")
    found = message.get_param("name", header="content-disposition")
    name = found if isinstance(found, str) else ""
    if not name:
        raise RequestError("a multipart part has no field name")
    filename = message.get_param("filename", header="content-disposition")
    if isinstance(filename, tuple):  # filename*=UTF-8''… (RFC 5987)
        filename = collapse_rfc2231_value(filename)
    part_type = str(message.get("content-type", "application/octet-stream"))
    return name, filename, part_type


@dataclass(frozen=True, slots=True)
class _Part:
    name: str
    filename: str | None
    content_type: str
    start: int  # the content's span in the body
    end: int


def _parts(data: bytes, content_type: str) -> Iterator[_Part]:
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    start = data.find(delimiter)
    if start < 0:
        raise RequestError("the multipart body has no part (boundary not found)")
    pos = start + len(delimiter)
    for _ in range(MAX_PARTS + 1):
        if data.startswith(b"--", pos):
            return  # the closing delimiter
        if not data.startswith(b"\r\n", pos):
            raise RequestError("malformed multipart body: a boundary line is not followed by CRLF")
        head_end = data.find(b"\r\n\r\n", pos + 2)
        end = data.find(b"\r\n" + delimiter, pos + 2)
        if end < 0:
            raise RequestError("the multipart body is cut short (no closing boundary)")
        if head_end < 0 or head_end > end:
            raise RequestError("malformed multipart body: a part has no header block")
        name, filename, part_type = _disposition(data[pos + 2 : head_end])
        yield _Part(name, filename, part_type, head_end + 4, end)
        pos = end + 2 + len(delimiter)
    raise RequestError(f"the multipart body has more than {MAX_PARTS} parts")


def parse_form(data: bytes, content_type: str) -> dict[str, Any]:
    """The form's fields: text as ``str``, files as `UploadedFile`. A field sent twice
    (``image[]`` in an edit) becomes a list, in order."""
    form: dict[str, Any] = {}
    for part in _parts(data, content_type):
        content = memoryview(data)[part.start : part.end]
        value: Any
        if part.filename is not None:
            head = bytes(content[:HEAD_BYTES])
            value = UploadedFile(part.filename, part.content_type, len(content), head)
        else:
            if len(content) > MAX_FIELD_BYTES:
                raise RequestError(
                    f"form field '{part.name}' is longer than {MAX_FIELD_BYTES} bytes"
                )
            try:
                value = bytes(content).decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(f"form field '{part.name}' is not valid UTF-8") from None
        if part.name in form:
            previous = form[part.name]
            form[part.name] = (
                [*previous, value] if isinstance(previous, list) else [previous, value]
            )
        else:
            form[part.name] = value
    return form


def replace_field(data: bytes, content_type: str, name: str, value: str) -> bytes:
    """The body with the text field ``name`` set to ``value`` (every occurrence), the
    rest byte for byte as sent; unchanged when the form has no such field."""
    spans = [
        (p.start, p.end) for p in _parts(data, content_type) if p.name == name and not p.filename
    ]
    out, pos = [], 0
    for start, end in spans:
        out += [data[pos:start], value.encode()]
        pos = end
    return b"".join([*out, data[pos:]]) if spans else data
