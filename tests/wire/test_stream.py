from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.wire.codes import Reason
from portway.wire.errors import ProtocolError
from portway.wire.stream import (
    EOF_CHUNK,
    MAX_CHUNK,
    StreamDecoder,
    chunk_header,
    encode_chunks,
    encode_reset,
)

from .chunking import cuts


def test_exact_bytes() -> None:
    assert chunk_header(1) == b"\x00\x00\x00\x01"
    assert chunk_header(MAX_CHUNK) == b"\x00\x10\x00\x00"
    assert EOF_CHUNK == b"\x00\x00\x00\x00"
    assert encode_reset(Reason.TARGET_REFUSED) == b"\xff\xff\xff\xff\x02"
    assert encode_reset(Reason.RESET) == b"\xff\xff\xff\xff\x01"
    assert b"".join(encode_chunks(b"abc")) == b"\x00\x00\x00\x03abc"
    assert encode_chunks(b"") == []
    with pytest.raises(ValueError, match="outside"):
        chunk_header(0)
    with pytest.raises(ValueError, match="outside"):
        chunk_header(MAX_CHUNK + 1)


def test_encode_does_not_copy_the_payload() -> None:
    data = b"x" * 10
    parts = encode_chunks(data)
    assert parts[1] is data


def test_large_payload_is_split_into_max_size_chunks_without_copy() -> None:
    data = bytes(range(256)) * (MAX_CHUNK // 256 * 2 + 1)
    parts = encode_chunks(data)
    assert [len(p) for p in parts] == [4, MAX_CHUNK, 4, MAX_CHUNK, 4, 256]
    assert all(isinstance(p, memoryview) and p.obj is data for p in parts[1::2])
    decoder = StreamDecoder()
    assert b"".join(decoder.feed(b"".join(parts))) == data


def test_decoder_returns_slices_of_the_fed_buffer() -> None:
    data = b"\x00\x00\x00\x03abc\x00\x00\x00\x02de"
    decoder = StreamDecoder()
    out = decoder.feed(data)
    assert [bytes(v) for v in out] == [b"abc", b"de"]
    assert all(v.obj is data for v in out)  # no copy: views into what we were given
    assert decoder.at_boundary


def test_payload_split_across_reads_is_returned_as_it_arrives() -> None:
    decoder = StreamDecoder()
    first = b"\x00\x00\x00\x06abc"
    assert [bytes(v) for v in decoder.feed(first)] == [b"abc"]
    assert not decoder.at_boundary
    assert [bytes(v) for v in decoder.feed(b"def")] == [b"def"]
    assert decoder.at_boundary


def test_half_close_then_reset() -> None:
    decoder = StreamDecoder()
    assert [bytes(v) for v in decoder.feed(b"\x00\x00\x00\x01z" + EOF_CHUNK)] == [b"z"]
    assert decoder.eof
    assert decoder.reset is None
    # After EOF the sender may still abort the connection...
    assert decoder.feed(encode_reset(Reason.TARGET_TIMEOUT)) == []
    assert decoder.reset is Reason.TARGET_TIMEOUT


def test_data_after_eof_is_an_error() -> None:
    decoder = StreamDecoder()
    decoder.feed(EOF_CHUNK)
    with pytest.raises(ProtocolError, match="after EOF"):
        decoder.feed(b"\x00\x00\x00\x01z")


def test_second_eof_is_an_error() -> None:
    decoder = StreamDecoder()
    with pytest.raises(ProtocolError, match="after EOF"):
        decoder.feed(EOF_CHUNK + EOF_CHUNK)


def test_anything_after_reset_is_an_error() -> None:
    decoder = StreamDecoder()
    decoder.feed(encode_reset(Reason.RESET))
    with pytest.raises(ProtocolError, match="after a stream reset"):
        decoder.feed(b"\x00")


def test_reset_marker_split_before_its_reason_byte() -> None:
    decoder = StreamDecoder()
    assert decoder.feed(b"\xff\xff\xff\xff") == []
    assert decoder.reset is None
    decoder.feed(b"\x05")
    assert decoder.reset is Reason.DENIED


def test_unknown_reset_reason_decodes_as_unknown() -> None:
    decoder = StreamDecoder()
    decoder.feed(b"\xff\xff\xff\xff\xc8")
    assert decoder.reset is Reason.UNKNOWN


def test_oversized_chunk_is_rejected_from_its_header() -> None:
    decoder = StreamDecoder()
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed((MAX_CHUNK + 1).to_bytes(4, "big"))


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bool, Reason | None]:
    payloads = draw(st.lists(st.binary(min_size=1, max_size=50), max_size=8))
    eof = draw(st.booleans())
    reset = draw(st.none() | st.sampled_from(Reason))
    return payloads, eof, reset


@given(streams(), st.data())
def test_any_chunking_gives_the_same_stream(
    stream: tuple[list[bytes], bool, Reason | None], data: st.DataObject
) -> None:
    payloads, eof, reset = stream
    wire = b"".join(b"".join(encode_chunks(p)) for p in payloads)
    wire += EOF_CHUNK if eof else b""
    wire += encode_reset(reset) if reset is not None else b""
    decoder = StreamDecoder()
    received = bytearray()
    for piece in data.draw(cuts(wire)):
        for view in decoder.feed(piece):
            assert view.obj is piece  # slices of this very read, never copies
            received += view
    assert bytes(received) == b"".join(payloads)
    assert decoder.eof is eof
    assert decoder.reset is reset
    assert decoder.at_boundary


@given(st.lists(st.binary(max_size=40), max_size=6))
def test_garbage_only_ever_raises_protocol_error(pieces: list[bytes]) -> None:
    decoder = StreamDecoder()
    total = 0
    try:
        for piece in pieces:
            total += sum(len(v) for v in decoder.feed(piece))
    except ProtocolError:
        return
    assert total <= sum(len(p) for p in pieces)
