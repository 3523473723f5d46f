from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.wire.codes import Reason
from portway.wire.datagram import (
    MAX_DATAGRAM,
    DatagramDecoder,
    datagram_header,
    encode_close,
    encode_datagram,
)
from portway.wire.errors import ProtocolError

from .chunking import cuts


def test_exact_bytes() -> None:
    assert encode_datagram(b"ping") == b"\x00\x04ping"
    assert encode_datagram(b"") == b"\x00\x00"
    assert datagram_header(MAX_DATAGRAM) == b"\xff\xe3"
    assert encode_close(Reason.IDLE_TIMEOUT) == b"\xff\xff\x0b"
    with pytest.raises(ValueError, match="exceeds"):
        datagram_header(MAX_DATAGRAM + 1)


def test_datagrams_inside_one_read_are_slices_of_it() -> None:
    data = encode_datagram(b"one") + encode_datagram(b"") + encode_datagram(b"three")
    decoder = DatagramDecoder()
    out = decoder.feed(data)
    assert [bytes(v) for v in out] == [b"one", b"", b"three"]
    assert all(v.obj is data for v in out)


def test_a_datagram_is_delivered_whole_or_not_at_all() -> None:
    decoder = DatagramDecoder()
    big = bytes(range(256)) * 255 + b"tail"
    wire = encode_datagram(big)
    assert decoder.feed(wire[:1000]) == []
    assert decoder.feed(wire[1000:-1]) == []
    out = decoder.feed(wire[-1:] + encode_datagram(b"next"))
    assert [bytes(v) for v in out] == [big, b"next"]


def test_largest_datagram_passes() -> None:
    payload = b"\x07" * MAX_DATAGRAM
    assert [bytes(v) for v in DatagramDecoder().feed(encode_datagram(payload))] == [payload]


def test_close_ends_the_channel() -> None:
    decoder = DatagramDecoder()
    assert [bytes(v) for v in decoder.feed(encode_datagram(b"a") + encode_close(Reason.RESET))] == [
        b"a"
    ]
    assert decoder.closed is Reason.RESET
    with pytest.raises(ProtocolError, match="after a datagram close"):
        decoder.feed(b"\x00")


def test_invalid_length_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        DatagramDecoder().feed(b"\xff\xe4")


@given(
    st.lists(st.binary(max_size=300), max_size=8), st.none() | st.sampled_from(Reason), st.data()
)
def test_any_chunking_gives_the_same_datagrams(
    datagrams: list[bytes], close: Reason | None, data: st.DataObject
) -> None:
    wire = b"".join(encode_datagram(d) for d in datagrams)
    wire += encode_close(close) if close is not None else b""
    decoder = DatagramDecoder()
    got: list[bytes] = []
    for piece in data.draw(cuts(wire)):
        got += [bytes(v) for v in decoder.feed(piece)]
    assert got == datagrams
    assert decoder.closed is close


@given(st.lists(st.binary(max_size=40), max_size=6))
def test_garbage_only_ever_raises_protocol_error(pieces: list[bytes]) -> None:
    decoder = DatagramDecoder()
    try:
        for piece in pieces:
            for view in decoder.feed(piece):
                assert len(view) <= MAX_DATAGRAM
    except ProtocolError:
        return
