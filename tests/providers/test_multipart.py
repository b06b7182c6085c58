"""``multipart/form-data`` bodies at their edges: the boundary's length, part headers,
the exact error of every malformed shape, the field and part bounds, and replacing a
field (found by mutation testing, docs/testing.md)."""

from __future__ import annotations

import pytest

from policy_sidecar.providers import RequestError
from policy_sidecar.providers._multipart import (
    MAX_FIELD_BYTES,
    MAX_PARTS,
    UploadedFile,
    boundary_of,
    is_form,
    parse_form,
    replace_field,
)

FORM = "multipart/form-data; boundary=b"


def part(name: str, value: bytes, *, headers: str = "") -> bytes:
    return (
        f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n{headers}\r\n'.encode()
        + value
        + b"\r\n"
    )


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--b--\r\n"


def error(data: bytes, content_type: str = FORM) -> str:
    with pytest.raises(RequestError) as caught:
        parse_form(data, content_type)
    return str(caught.value)


def test_a_boundary_is_1_to_70_characters() -> None:
    assert boundary_of("multipart/form-data; boundary=" + "x" * 70) == "x" * 70
    for bad in ('multipart/form-data; boundary=""', "multipart/form-data; boundary=" + "x" * 71):
        with pytest.raises(RequestError) as caught:
            boundary_of(bad)
        assert str(caught.value) == "multipart/form-data needs a boundary of 1 to 70 characters"
    long = "y" * 70
    data = f'--{long}\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--{long}--'
    assert parse_form(data.encode(), f"multipart/form-data; boundary={long}") == {"a": "v"}


def test_is_form_reads_the_media_type_only() -> None:
    assert is_form(" Multipart/Form-Data ; boundary=x")
    assert is_form("multipart/form-data")
    assert is_form("multipart/form-data; boundary=x; charset=utf-8")
    assert not is_form("multipart/mixed; boundary=x")
    assert not is_form(None)


def test_a_file_part_keeps_its_name_type_size_and_head() -> None:
    content = bytes(range(256)) * 20  # 5,120 bytes: the head is the first 4,096
    form = parse_form(
        body(
            part("image", content, headers="Content-Type: image/png\r\n").replace(
                b'name="image"', b'name="image"; filename="a:b.png"'
            ),
            part("mask", b"\x00", headers="").replace(b'name="mask"', b'name="mask"; filename="m"'),
        ),
        FORM,
    )
    assert form["image"] == UploadedFile("a:b.png", "image/png", 5120, content[:4096])
    # No Content-Type: a file is application/octet-stream.
    assert form["mask"] == UploadedFile("m", "application/octet-stream", 1, b"\x00")


def test_part_headers_are_decoded_leniently_and_a_utf8_filename_is_read() -> None:
    data = body(
        b'--b\r\nContent-Disposition: form-data; name="f"; filename="\xff.wav"\r\n\r\nx\r\n',
        b"--b\r\nContent-Disposition: form-data; name=\"g\"; filename*=UTF-8''caf%C3%A9.wav"
        b"\r\n\r\ny\r\n",
    )
    form = parse_form(data, FORM)
    assert form["f"].filename == "\ufffd.wav"
    assert form["g"] == UploadedFile("café.wav", "application/octet-stream", 1, b"y")


def test_a_field_name_may_hold_a_colon() -> None:
    assert parse_form(body(part("a:b", b"v")), FORM) == {"a:b": "v"}


def test_a_field_sent_three_times_is_a_list_in_order() -> None:
    form = parse_form(body(part("x", b"1"), part("x", b"2"), part("x", b"3")), FORM)
    assert form == {"x": ["1", "2", "3"]}


def test_a_text_field_of_exactly_the_limit_is_read_one_byte_more_is_refused() -> None:
    assert parse_form(body(part("p", b"a" * MAX_FIELD_BYTES)), FORM)["p"] == "a" * MAX_FIELD_BYTES
    assert error(body(part("p", b"a" * (MAX_FIELD_BYTES + 1)))) == (
        "form field 'p' is longer than 1048576 bytes"
    )


def test_exactly_max_parts_are_read() -> None:
    form = parse_form(body(*(part(f"f{i}", b"v") for i in range(MAX_PARTS))), FORM)
    assert len(form) == MAX_PARTS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"no delimiter", "the multipart body has no part (boundary not found)"),
        (b"--bX", "malformed multipart body: a boundary line is not followed by CRLF"),
        (
            b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nv',
            "the multipart body is cut short (no closing boundary)",
        ),
        (b"--b\r\n--b--\r\n", "the multipart body is cut short (no closing boundary)"),
        (b"--b\r\nvalue\r\n--b--", "malformed multipart body: a part has no header block"),
        (b"--b\r\n\r\nvalue\r\n--b--", "malformed multipart body: a part has no header block"),
        (b"--b\r\n\r\n--b--", "malformed multipart body: a part has no header block"),
        # An empty header block is one: the headers after the blank line are content.
        (
            b'--b\r\n\r\n\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--b--',
            "every multipart part needs Content-Disposition: form-data",
        ),
        (
            b"--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--",
            "every multipart part needs Content-Disposition: form-data",
        ),
        (
            b"--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--",
            "a multipart part has no field name",
        ),
        (
            b"--b\r\nContent-Disposition: form-data; name*=UTF-8''n\r\n\r\nv\r\n--b--",
            "a multipart part has no field name",
        ),
    ],
)
def test_every_malformed_shape_has_its_exact_error(data: bytes, message: str) -> None:
    assert error(data) == message


def test_replacing_a_field_leaves_the_other_fields_and_files() -> None:
    data = body(
        part("model", b"a"),
        part("language", b"en"),
        part("model", b"b").replace(b'name="model"', b'name="model"; filename="model"'),
        part("model", b"c"),
    )
    replaced = replace_field(data, FORM, "model", "whisper-1")
    form = parse_form(replaced, FORM)
    assert form["language"] == "en"
    assert form["model"][0] == "whisper-1" and form["model"][2] == "whisper-1"
    assert form["model"][1] == UploadedFile("model", "application/octet-stream", 1, b"b")
    assert replaced == data.replace(b"\r\n\r\na\r\n", b"\r\n\r\nwhisper-1\r\n").replace(
        b"\r\n\r\nc\r\n", b"\r\n\r\nwhisper-1\r\n"
    )
    assert replace_field(data, FORM, "absent", "x") is data
