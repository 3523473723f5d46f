from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portway.wire.assignment_messages import (
    Assign,
    AssignError,
    AssignMode,
    AssignOk,
    Diagnosis,
    DiagnosticStep,
    DirectOpen,
)
from portway.wire.codes import Reason, SessionCode
from portway.wire.control_messages import (
    BindSpec,
    BindStatus,
    ChannelHello,
    ControlHello,
    Counter,
    Counters,
    DesiredState,
    Detected,
    DirectGrant,
    Goodbye,
    Ping,
    Pong,
    Protocol,
    ReachOpen,
    ReachReject,
    Refused,
    Status,
    TargetStatus,
    TunnelSpec,
    Welcome,
)
from portway.wire.errors import ProtocolError
from portway.wire.frames import MAX_HELLO_PAYLOAD, encode_frame
from portway.wire.message_types import MessageType
from portway.wire.messages import Message, MessageReader, decode, encode

from .chunking import cuts


def frame(kind: int, payload: str) -> bytes:
    body = payload.encode()
    return len(body).to_bytes(4, "big") + bytes((kind,)) + body


# Every message type with its exact encoding: the documented wire format, byte for byte.
EXACT: list[tuple[Message, bytes]] = [
    (
        ControlHello(token="t0k", software="portway/0.1.0", hostname="lap", pid=42),
        frame(
            0x01,
            '{"token":"t0k","software":"portway/0.1.0","hostname":"lap","pid":42,"features":[]}',
        ),
    ),
    (ChannelHello(session="s1", secret="c5"), frame(0x02, '{"session":"s1","secret":"c5"}')),
    (ChannelHello(session="s1", token="t0k"), frame(0x02, '{"session":"s1","token":"t0k"}')),
    (
        Welcome("s1", "ag1", 5.0, 15.0, "c5", 0),  # no pool in version 2: always 0
        frame(
            0x03,
            '{"session":"s1","agent":"ag1","heartbeat_interval":5.0,"heartbeat_timeout":15.0,'
            '"channel_secret":"c5","pool_size":0}',
        ),
    ),
    (
        Refused(SessionCode.REVOKED, "agent revoked"),
        frame(0x04, '{"reason":"revoked","message":"agent revoked"}'),
    ),
    (
        Refused(SessionCode.SHUTTING_DOWN, "", retry_after=2.5),
        frame(0x04, '{"reason":"shutting_down","message":"","retry_after":2.5}'),
    ),
    (
        DesiredState(
            3,
            (TunnelSpec("t1", "db", Protocol.TCP, "10.0.0.5", 5432),),
            (BindSpec("b1", "t2", "api", Protocol.TCP, ("127.0.0.1", "::1"), 8080),),
        ),
        frame(
            0x10,
            '{"revision":3,"tunnels":[{"id":"t1","name":"db","protocol":"tcp",'
            '"host":"10.0.0.5","port":5432}],"binds":[{"id":"b1","tunnel":"t2","name":"api",'
            '"protocol":"tcp","addresses":["127.0.0.1","::1"],"port":8080}]}',
        ),
    ),
    (
        DesiredState(
            4,
            direct=(DirectGrant("t1", ("urn:portway:agent:a2", "urn:portway:share:s1")),),
        ),
        frame(
            0x10,
            '{"revision":4,"tunnels":[],"binds":[],"direct":[{"tunnel":"t1",'
            '"peers":["urn:portway:agent:a2","urn:portway:share:s1"]}]}',
        ),
    ),
    (
        Status(4, candidates=("192.0.2.7:41000",)),
        frame(0x11, '{"revision":4,"targets":[],"binds":[],"candidates":["192.0.2.7:41000"]}'),
    ),
    (
        Status(
            3,
            (TargetStatus("t1", False, Reason.DENIED, "169.254.169.254 is link-local"),),
            (BindStatus("b1", True, 8080),),
        ),
        frame(
            0x11,
            '{"revision":3,"targets":[{"tunnel":"t1","ok":false,"reason":"denied",'
            '"message":"169.254.169.254 is link-local"}],'
            '"binds":[{"bind":"b1","ok":true,"port":8080,"message":""}]}',
        ),
    ),
    (
        Counters((Counter("t1", 2, 10, 1000, 2000),)),
        frame(
            0x12,
            '{"items":[{"tunnel":"t1","active":2,"total":10,"bytes_in":1000,"bytes_out":2000}]}',
        ),
    ),
    (Ping(7), b'\x00\x00\x00\x08\x13{"id":7}'),
    (Pong(7), b'\x00\x00\x00\x08\x14{"id":7}'),
    (ReachOpen("b1", "c9"), frame(0x16, '{"bind":"b1","conn":"c9"}')),
    (
        ReachReject("c9", Reason.PAUSED, "tunnel paused"),
        frame(0x17, '{"conn":"c9","reason":"paused","message":"tunnel paused"}'),
    ),
    (
        Goodbye(SessionCode.HEARTBEAT_TIMEOUT, "no pong for 15 s"),
        frame(0x1F, '{"reason":"heartbeat_timeout","message":"no pong for 15 s"}'),
    ),
    (
        Assign("c1", AssignMode.DIAL, "t1", Protocol.TCP, "10.0.0.5", 5432),
        frame(
            0x20,
            '{"conn":"c1","mode":"dial","tunnel":"t1","protocol":"tcp",'
            '"host":"10.0.0.5","port":5432}',
        ),
    ),
    (
        Assign(
            "c2",
            AssignMode.REACH,
            "t1",
            Protocol.TCP,
            "10.0.0.5",
            5432,
            peer="urn:portway:agent:a1",
            candidates=("192.0.2.7:41000", "[2001:db8::7]:41000"),
        ),
        frame(
            0x20,
            '{"conn":"c2","mode":"reach","tunnel":"t1","protocol":"tcp","host":"10.0.0.5",'
            '"port":5432,"peer":"urn:portway:agent:a1",'
            '"candidates":["192.0.2.7:41000","[2001:db8::7]:41000"]}',
        ),
    ),
    (DirectOpen("t1", "c3"), frame(0x24, '{"tunnel":"t1","conn":"c3"}')),
    (AssignOk("c1"), frame(0x21, '{"conn":"c1"}')),
    (
        AssignError("c1", Reason.TARGET_REFUSED, "connect: refused"),
        frame(0x22, '{"conn":"c1","reason":"target_refused","message":"connect: refused"}'),
    ),
    (
        Diagnosis(
            "c2",
            (DiagnosticStep("dns", "ok", 0.5, "db → 10.0.0.5"), DiagnosticStep("tls", "skip")),
            12.25,
            Detected("postgres", detail="PostgreSQL, no TLS"),
        ),
        frame(
            0x23,
            '{"conn":"c2","steps":[{"name":"dns","status":"ok","ms":0.5,"detail":"db → 10.0.0.5"},'
            '{"name":"tls","status":"skip","detail":""}],"elapsed_ms":12.25,'
            '"detected":{"protocol":"postgres","auth_required":false,'
            '"detail":"PostgreSQL, no TLS"}}',
        ),
    ),
]


def test_every_message_type_has_an_exact_encoding_test() -> None:
    assert {type(m).TYPE for m, _ in EXACT} == set(MessageType)


@pytest.mark.parametrize(("message", "wire"), EXACT, ids=lambda v: type(v).__name__)
def test_exact_encoding(message: Message, wire: bytes) -> None:
    assert encode(message) == wire
    assert decode(wire[4], wire[5:]) == message


def test_the_type_of_version_1s_open_channels_stays_reserved() -> None:
    assert 0x15 not in set(MessageType)
    with pytest.raises(ProtocolError, match="unknown frame type 0x15"):
        decode(0x15, b'{"count":2}')


def test_non_ascii_text_is_utf8_not_escaped() -> None:
    assert encode(Goodbye(SessionCode.CLIENT_EXIT, "au revoir ✓")) == frame(
        0x1F, '{"reason":"client_exit","message":"au revoir ✓"}'
    )


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    assert decode(0x13, b'{"id":1,"sent_at":"later"}') == Ping(1)


def test_unknown_codes_decode_as_unknown() -> None:
    assert decode(0x04, b'{"reason":"solar_flare"}') == Refused(SessionCode.UNKNOWN)
    assert decode(0x22, b'{"conn":"c","reason":"solar_flare"}') == AssignError("c", Reason.UNKNOWN)


@pytest.mark.parametrize(
    ("kind", "payload", "match"),
    [
        (0x99, b"{}", "unknown frame type 0x99"),
        (0x13, b"", "not JSON"),
        (0x13, b"\xff", "not JSON"),
        (0x13, b"[1]", "expected an object"),
        (0x13, b"{}", "missing field 'id'"),
        (0x13, b'{"id":true}', "non-negative"),
        (0x13, b'{"id":-1}', "non-negative"),
        (0x13, b'{"id":1.5}', "non-negative"),
        (0x13, b'{"id":9223372036854775808}', "non-negative"),
        (0x13, b'{"id":NaN}', "not JSON"),
        (0x13, b"[" * 100_000, "not JSON"),
        (0x03, b'{"session":"s","agent":"a","heartbeat_interval":1e999}', "finite"),
        (
            0x20,
            b'{"conn":"c","mode":"fly","tunnel":"t","protocol":"tcp","host":"h","port":1}',
            "one of",
        ),
        (
            0x20,
            b'{"conn":"c","mode":"dial","tunnel":"t","protocol":"tcp","host":"h","port":0}',
            "out of range",
        ),
        (0x02, b'{"session":"s"}', "exactly one of secret and token"),
        (0x02, b'{"session":"s","secret":"a","token":"b"}', "exactly one"),
        (0x10, b'{"revision":1,"tunnels":{}}', "expected a list"),
        (0x01, b'{"token":"' + b"x" * 5000 + b'"}', "at most 4096"),
    ],
)
def test_malformed_payloads_raise_protocol_error(kind: int, payload: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode(kind, payload)


def test_reader_pulls_one_message_and_leaves_stream_bytes() -> None:
    assign = Assign("c1", AssignMode.DIAL, "t1", Protocol.TCP, "db", 5432)
    reader = MessageReader()
    reader.feed(encode(assign) + b"\x00\x00\x00\x02hi")
    assert reader.next_message() == assign
    assert reader.take_rest() == b"\x00\x00\x00\x02hi"


def test_reader_stays_broken_after_a_bad_message() -> None:
    reader = MessageReader()
    reader.feed(encode_frame(0x13, b"{}") + encode(Ping(1)))
    for _ in range(2):
        with pytest.raises(ProtocolError, match="missing field"):
            reader.next_message()


def test_reader_limits_hello_size_before_authentication() -> None:
    reader = MessageReader()
    reader.feed((MAX_HELLO_PAYLOAD + 1).to_bytes(4, "big") + b"\x01")
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.next_message()


# --- properties -------------------------------------------------------------------------------

text = st.text(max_size=40)
count = st.integers(0, 2**63 - 1)
port = st.integers(1, 65535)
seconds = st.floats(0.001, 3600, allow_nan=False)
reason = st.sampled_from(Reason)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(ControlHello, text, text, text, count, st.lists(text, max_size=3).map(tuple)),
    st.builds(ChannelHello, text, secret=text),
    st.builds(ChannelHello, text, token=text),
    st.builds(Welcome, text, text, seconds, seconds, text, count),
    st.builds(Refused, st.sampled_from(SessionCode), text, st.none() | seconds),
    st.builds(
        DesiredState,
        count,
        st.lists(st.builds(TunnelSpec, text, text, st.sampled_from(Protocol), text, port)).map(
            tuple
        ),
        st.lists(
            st.builds(
                BindSpec,
                text,
                text,
                text,
                st.sampled_from(Protocol),
                st.lists(text, max_size=2).map(tuple),
                st.integers(0, 65535),
            )
        ).map(tuple),
    ),
    st.builds(
        Status,
        count,
        st.lists(st.builds(TargetStatus, text, st.booleans(), st.none() | reason, text)).map(tuple),
        st.lists(st.builds(BindStatus, text, st.booleans(), st.integers(0, 65535), text)).map(
            tuple
        ),
    ),
    st.builds(Counters, st.lists(st.builds(Counter, text, count, count, count, count)).map(tuple)),
    st.builds(Ping, count),
    st.builds(Pong, count),
    st.builds(ReachOpen, text, text),
    st.builds(ReachReject, text, reason, text),
    st.builds(Goodbye, st.sampled_from(SessionCode), text),
    st.builds(
        Assign, text, st.sampled_from(AssignMode), text, st.sampled_from(Protocol), text, port
    ),
    st.builds(AssignOk, text),
    st.builds(AssignError, text, reason, text),
)


@given(messages)
def test_round_trip(message: Message) -> None:
    wire = encode(message)
    assert int.from_bytes(wire[:4], "big") == len(wire) - 5
    assert wire[4] == type(message).TYPE
    json.loads(wire[5:])  # the payload is plain JSON anyone can read
    assert decode(wire[4], wire[5:]) == message


@given(st.lists(messages, max_size=6), st.data())
def test_any_chunking_gives_the_same_messages(batch: list[Message], data: st.DataObject) -> None:
    wire = b"".join(encode(m) for m in batch)
    reader = MessageReader(max_payload=1 << 20)
    got: list[Message] = []
    for piece in data.draw(cuts(wire)):
        reader.feed(piece)
        while (message := reader.next_message()) is not None:
            got.append(message)
    assert got == batch


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(st.sampled_from(MessageType), json_values)
def test_arbitrary_json_only_ever_raises_protocol_error(kind: int, value: Any) -> None:
    payload = json.dumps(value).encode()
    try:
        message = decode(kind, payload)
    except ProtocolError:
        return
    assert kind == type(message).TYPE


@given(st.integers(0, 255), st.binary(max_size=100))
def test_arbitrary_bytes_only_ever_raise_protocol_error(kind: int, payload: bytes) -> None:
    try:
        message = decode(kind, payload)
    except ProtocolError:
        return
    assert kind == type(message).TYPE
