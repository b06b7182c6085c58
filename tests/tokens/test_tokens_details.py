"""Details of the tokens package found by mutation testing: windowing of long texts,
legacy and fine-tuned model names, profiles, loader errors in full, delivered text."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest

from policy_sidecar.providers import ParsedRequest, PromptMessage
from policy_sidecar.tokens import (
    EncodingLoadError,
    Profile,
    TokenEstimator,
    _loader,
    count_text,
    encoding_for_model,
    load_encoding,
)
from policy_sidecar.tokens._estimator import WINDOW_CHARS, _windows
from policy_sidecar.tokens._loader import _bundled_path
from policy_sidecar.tokens.delivered import DeliveredText

# -- long texts are counted in windows cut at the last space -----------------------------


def test_windows_cover_the_text_exactly_and_end_at_the_last_space() -> None:
    words = " ".join(f"w{i % 997}" for i in range(40_000))  # ~200k chars, short words
    pieces = _windows(words)
    assert "".join(pieces) == words
    assert len(pieces) > 2
    for piece in pieces[:-1]:
        assert len(piece) <= WINDOW_CHARS
        assert len(piece) > WINDOW_CHARS - 8  # as long as possible: the last space
        assert words[sum(map(len, pieces[: pieces.index(piece) + 1]))] == " "
    assert all(pieces)


def test_a_text_without_spaces_is_cut_at_the_window_size() -> None:
    text = "a" * (2 * WINDOW_CHARS + 5)
    assert [len(p) for p in _windows(text)] == [WINDOW_CHARS, WINDOW_CHARS, 5]


# -- model names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("text-davinci-003", "cl100k_base"),  # p50k_base is not loaded: cl100k_base
        ("ft:text-davinci-003:acme::x1", "cl100k_base"),  # the base model's, not unknown
        ("ft:gpt-3.5-turbo-0125:acme:name:x1", "cl100k_base"),
    ],
)
def test_legacy_and_fine_tuned_models(model: str, encoding: str) -> None:
    assert encoding_for_model(model) == encoding


# -- the estimator -------------------------------------------------------------------------


def test_the_o200k_encoding_is_required() -> None:
    message = "the o200k_base encoding is required (proxy for other vendors)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TokenEstimator({"cl100k_base": load_encoding("cl100k_base")})


def test_a_proxy_provider_uses_o200k_whatever_the_model(estimator: TokenEstimator) -> None:
    assert estimator.encoding("gemini", "gpt-3.5-turbo").name == "o200k_base"
    assert estimator.encoding("openai", "gpt-3.5-turbo").name == "cl100k_base"


def test_given_profiles_replace_the_built_in_ones() -> None:
    o200k = load_encoding("o200k_base")
    est = TokenEstimator({"o200k_base": o200k}, profiles={"p": Profile(1.0, 0, 0, 0, 7, False)})
    try:
        assert est.estimate("p", ParsedRequest("m", False, None, image_count=2)) == 14
    finally:
        est.close()


def test_messages_and_extra_text_all_count(estimator: TokenEstimator) -> None:
    enc = estimator.encoding("openai", "gpt-4o")
    parsed = ParsedRequest(
        "gpt-4o",
        False,
        None,
        (PromptMessage("user", "hello there"),),
        extra_text=("a tool definition", "a system prompt"),
    )
    expected = (
        3  # per message
        + count_text(enc, "user")
        + count_text(enc, "hello there")
        + count_text(enc, "a tool definition")
        + count_text(enc, "a system prompt")
        + 3  # reply priming
    )
    assert estimator.estimate("openai", parsed) == expected


# -- loader errors name the encoding, the file and the problem ---------------------------


def test_an_unreadable_file_in_full(tmp_path: Path) -> None:
    (tmp_path / "cl100k_base.tiktoken").mkdir()  # a directory where the file should be
    with pytest.raises(EncodingLoadError) as caught:
        load_encoding("cl100k_base", str(tmp_path))
    error = caught.value
    assert (error.encoding, error.path) == ("cl100k_base", str(tmp_path / "cl100k_base.tiktoken"))
    assert error.problem == "unreadable (Is a directory)"


def test_a_bad_gzip_in_full(tmp_path: Path) -> None:
    path = tmp_path / "cl100k_base.tiktoken.gz"
    path.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(EncodingLoadError) as caught:
        load_encoding("cl100k_base", str(tmp_path))
    assert (caught.value.encoding, caught.value.path) == ("cl100k_base", str(path))
    assert caught.value.problem.startswith("not a valid gzip file (")


def test_a_missing_file_names_the_plain_file(tmp_path: Path) -> None:
    with pytest.raises(EncodingLoadError) as caught:
        load_encoding("o200k_base", str(tmp_path))
    assert (caught.value.encoding, caught.value.path, caught.value.problem) == (
        "o200k_base",
        str(tmp_path / "o200k_base.tiktoken"),
        "file not found",
    )


def test_a_plain_file_wins_over_a_packed_one(tmp_path: Path) -> None:
    plain = gzip.decompress(_bundled_path("cl100k_base").read_bytes())
    (tmp_path / "cl100k_base.tiktoken").write_bytes(plain)
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(b"\x1f\x8bnot really gzip")
    assert load_encoding("cl100k_base", str(tmp_path)).encode("hello world") == [15339, 1917]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"IQ== 0\n\nIg== 1\n!!!! 2\n", 4),  # not base64 (after an empty line)
        (b"IQ== 0\nIg==\n", 2),  # no rank
    ],
)
def test_a_malformed_line_is_named_by_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, line: int
) -> None:
    # a file that passes the hash check (the pin is this file's own) but is malformed
    monkeypatch.setitem(_loader.EXPECTED_SHA256, "cl100k_base", hashlib.sha256(data).hexdigest())
    path = tmp_path / "cl100k_base.tiktoken"
    path.write_bytes(data)
    with pytest.raises(EncodingLoadError) as caught:
        load_encoding("cl100k_base", str(tmp_path))
    assert (caught.value.encoding, caught.value.path) == ("cl100k_base", str(path))
    assert caught.value.problem == f"malformed line {line}"


# -- delivered text ------------------------------------------------------------------------


def test_nothing_recognised_before_any_content() -> None:
    assert DeliveredText().recognised is False


def test_an_empty_field_does_not_hide_the_next_one_on_its_line() -> None:
    d = DeliveredText()
    d.feed(b'data: {"content":"","text":"hi"}\n')
    assert d.text() == "hi"


def test_the_text_kept_stops_exactly_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("policy_sidecar.tokens.delivered.MAX_TEXT_CHARS", 5)
    d = DeliveredText()
    d.feed(b'data: {"content":"abcd"}\n')
    d.feed(b'data: {"content":"efg"}\n')
    assert (d.text(), d.chars) == ("abcde", 7)


def test_an_undecodable_escape_keeps_the_raw_text_with_invalid_utf8_replaced() -> None:
    d = DeliveredText()
    d.feed(b'data: {"content":"caf\xc3 \\q"}\n')  # \q is no JSON escape
    assert d.text() == "caf\ufffd \\q"


@pytest.mark.parametrize(("directory", "shown"), [(None, "<bundled>"), ("/srv/enc", "/srv/enc")])
def test_an_unknown_encoding_name_in_full(directory: str | None, shown: str) -> None:
    with pytest.raises(EncodingLoadError) as caught:
        load_encoding("p50k_base", directory)
    error = caught.value
    assert (error.encoding, error.path, error.problem) == (
        "p50k_base",
        shown,
        "unknown encoding name",
    )
