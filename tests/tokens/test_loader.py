"""Encodings load offline, verified against tiktoken's hashes; bad files fail at start-up."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load

from policy_sidecar.tokens import (
    EXPECTED_SHA256,
    EncodingLoadError,
    TokenEstimator,
    load_encoding,
    load_estimator,
)
from policy_sidecar.tokens._loader import _bundled_path, encoding_spec


@pytest.mark.parametrize("name", sorted(EXPECTED_SHA256))
def test_pinned_hashes_are_tiktokens_own(name: str) -> None:
    assert encoding_spec(name)["expected_hash"] == EXPECTED_SHA256[name]


@pytest.mark.parametrize(
    ("name", "ids"), [("cl100k_base", [15339, 1917]), ("o200k_base", [24912, 2375])]
)
def test_hello_world_is_two_known_tokens(
    estimator: TokenEstimator, name: str, ids: list[int]
) -> None:
    enc = estimator._encodings[name]
    assert isinstance(enc, tiktoken.Encoding)
    assert enc.encode("hello world") == ids
    assert enc.decode(ids) == "hello world"


def test_loading_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access during encoding load")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", no_network)
    enc = load_encoding("cl100k_base")
    assert enc.n_vocab == 100277


def _plain(tmp_path: Path, name: str, data: bytes | None = None) -> Path:
    path = tmp_path / f"{name}.tiktoken"
    path.write_bytes(gzip.decompress(_bundled_path(name).read_bytes()) if data is None else data)
    return path


def test_directory_of_plain_files(tmp_path: Path) -> None:
    for name in EXPECTED_SHA256:
        _plain(tmp_path, name)
    estimator = load_estimator(str(tmp_path))
    assert estimator._encodings["o200k_base"].encode("hello world") == [24912, 2375]


def test_corrupt_file_is_a_startup_error(tmp_path: Path) -> None:
    original = gzip.decompress(_bundled_path("cl100k_base").read_bytes())
    corrupt = original.replace(b"IQ== 0", b"IQ== 7", 1)
    path = _plain(tmp_path, "cl100k_base", corrupt)
    with pytest.raises(EncodingLoadError) as info:
        load_encoding("cl100k_base", str(tmp_path))
    assert info.value.path == str(path)
    assert info.value.encoding == "cl100k_base"
    assert "SHA-256 mismatch" in info.value.problem
    assert EXPECTED_SHA256["cl100k_base"] in str(info.value)


def test_truncated_file_is_a_startup_error(tmp_path: Path) -> None:
    original = gzip.decompress(_bundled_path("o200k_base").read_bytes())
    _plain(tmp_path, "o200k_base", original[: len(original) // 2])
    with pytest.raises(EncodingLoadError, match="SHA-256 mismatch"):
        load_encoding("o200k_base", str(tmp_path))


def test_missing_file_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(EncodingLoadError) as info:
        load_estimator(str(tmp_path))
    assert info.value.problem == "file not found"
    assert info.value.path.startswith(str(tmp_path))


def test_bad_gzip_is_a_startup_error(tmp_path: Path) -> None:
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(EncodingLoadError, match="not a valid gzip file"):
        load_encoding("cl100k_base", str(tmp_path))


def test_unknown_encoding_name() -> None:
    with pytest.raises(EncodingLoadError, match="unknown encoding name"):
        load_encoding("p50k_base")
