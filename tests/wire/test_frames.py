from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.wire.errors import ProtocolError
from portway.wire.frames import (
    MAGIC,
    Frame,
    FrameReader,
    encode_frame,
    encode_preface,
)

from .chunking import cuts


def test_preface_bytes() -> None:
    assert MAGIC == b"\x89PWY\r\n\x1a\n"
    assert encode_preface(2) == b"\x89PWY\r\n\x1a\n\x00\x02"
    assert encode_preface(0x0203) == MAGIC + b"\x02\x03"


def test_frame_bytes() -> None:
    assert encode_frame(0x13, b'{"id":7}') == b"\x00\x00\x00\x08\x13" + b'{"id":7}'
    assert encode_frame(0xFF, b"") == b"\x00\x00\x00\x00\xff"
    with pytest.raises(ValueError, match="byte"):
        encode_frame(256, b"")


def test_reader_reads_frames_and_keeps_the_rest() -> None:
    reader = FrameReader()
    reader.feed(encode_frame(1, b"ab") + encode_frame(2, b"") + b"stream bytes")
    assert reader.next_frame() == Frame(1, b"ab")
    assert reader.next_frame() == Frame(2, b"")
    # The tail is not a frame we were asked for: it stays untouched for the stream decoder.
    assert reader.take_rest() == b"stream bytes"
    assert reader.buffered == 0


def test_reader_waits_for_whole_frames() -> None:
    reader = FrameReader()
    data = encode_frame(7, b"hello")
    for i in range(len(data) - 1):
        reader.feed(data[i : i + 1])
        assert reader.next_frame() is None
    reader.feed(data[-1:])
    assert reader.next_frame() == Frame(7, b"hello")
    assert reader.next_frame() is None


def test_oversized_frame_is_refused_from_its_header_alone() -> None:
    reader = FrameReader(max_payload=100)
    reader.feed(b"\x00\x00\x00\x65\x01")  # 101 bytes announced, none sent
    with pytest.raises(ProtocolError) as info:
        reader.next_frame()
    assert info.value.code == "frame_too_large"
    # The reader stays broken: the same error again, whatever is fed.
    reader.feed(encode_frame(1, b""))
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.next_frame()


def test_limit_can_be_raised_after_authentication() -> None:
    reader = FrameReader(max_payload=4)
    reader.feed(encode_frame(1, b"12345"))
    reader.max_payload = 5
    assert reader.next_frame() == Frame(1, b"12345")


@given(
    frames=st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=8),
    data=st.data(),
)
def test_any_chunking_gives_the_same_frames(
    frames: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    wire = b"".join(encode_frame(k, p) for k, p in frames)
    reader = FrameReader(max_payload=300)
    got: list[Frame] = []
    for piece in data.draw(cuts(wire)):
        reader.feed(piece)
        while (frame := reader.next_frame()) is not None:
            got.append(frame)
    assert got == [Frame(k, p) for k, p in frames]
    assert reader.take_rest() == b""


@given(st.binary(max_size=200))
def test_garbage_only_ever_raises_protocol_error(garbage: bytes) -> None:
    reader = FrameReader(max_payload=64)
    reader.feed(garbage)
    try:
        while reader.next_frame() is not None:
            pass
    except ProtocolError:
        pass
