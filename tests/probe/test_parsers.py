"""The sans-IO probe parsers byte by byte: partial input waits, complete input decides, and
replies from the wrong protocol are told apart (with signs of TLS noticed)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from portway.probe import Detection, ProbeError, bson, hint_from
from portway.probe.databases import SSL_REQUEST, parse_postgres, parse_redis
from portway.probe.http import head_request, parse_head
from portway.probe.mongo import HELLO, REQUEST_ID, msg_document, op_msg, parse_mongo, split_message
from portway.probe.protocols import (
    NOTHING,
    Answer,
    first_line,
    normalize_hint,
    parse_greeting,
    probe_order,
    tls_seen,
)  # fmt: skip
from tests.probe.fakes import mariadb_greeting

TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x46"


def feed(parse: Callable[[bytes, bool], Answer | None], reply: bytes) -> Answer:
    """Every proper prefix of `reply` must ask for more; the whole reply must decide."""
    for end in range(len(reply)):
        assert parse(reply[:end], False) is None, f"decided after {end} of {len(reply)} bytes"
    answer = parse(reply, False)
    assert answer is not None
    return answer


# --- PostgreSQL ---------------------------------------------------------------------------------


def test_ssl_request_is_the_documented_eight_bytes() -> None:
    assert bytes.fromhex("0000000804d2162f") == SSL_REQUEST


def test_postgres_answers() -> None:
    accepts = parse_postgres(b"S", False)
    assert accepts is not None and accepts.upgrade_tls
    assert accepts.detection == Detection("postgres", detail="PostgreSQL, accepts TLS")
    plain = parse_postgres(b"N", False)
    assert plain == Answer(Detection("postgres", detail="PostgreSQL, no TLS"))
    assert parse_postgres(b"", False) is None
    assert parse_postgres(b"", True) == NOTHING


def test_postgres_error_response_split_anywhere() -> None:
    fields = b"SFATAL\x00C53300\x00Msorry, too many clients already\x00\x00"
    reply = b"E" + struct.pack(">I", 4 + len(fields)) + fields
    answer = feed(parse_postgres, reply)
    assert answer.detection is not None
    assert answer.detection.detail == "PostgreSQL, refused: sorry, too many clients already"


def test_postgres_probe_ignores_other_protocols_but_notices_tls() -> None:
    assert parse_postgres(b"SSH-2.0-x\r\n", False) == NOTHING  # more than the one byte 'S'
    assert parse_postgres(b"HTTP/1.1 400 Bad Request\r\n", False) == NOTHING
    assert parse_postgres(TLS_ALERT, False) == Answer(tls_seen=True)


# --- Redis --------------------------------------------------------------------------------------


def test_redis_pong_and_info_split_anywhere() -> None:
    info = b"# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n"
    reply = b"+PONG\r\n$%d\r\n%s\r\n" % (len(info), info)
    answer = feed(parse_redis, reply)
    assert answer.detection == Detection("redis", version="7.2.4", detail="Redis 7.2.4")


def test_redis_without_info_still_redis_at_eof() -> None:
    answer = parse_redis(b"+PONG\r\n", True)
    assert answer is not None and answer.detection == Detection("redis", detail="Redis")
    renamed = parse_redis(b"+PONG\r\n-ERR unknown command 'INFO'\r\n", False)
    assert renamed is not None and renamed.detection == Detection("redis", detail="Redis")


@pytest.mark.parametrize(
    "reply",
    [b"-NOAUTH Authentication required.\r\n", b"-NOPERM this user has no permissions\r\n",
     b"-ERR operation not permitted, auth first\r\n"],
)  # fmt: skip
def test_redis_password_required(reply: bytes) -> None:
    answer = feed(parse_redis, reply)
    assert answer.detection is not None and answer.detection.auth_required
    assert answer.detection.protocol == "redis"


def test_redis_probe_rejects_lookalikes() -> None:
    assert parse_redis(b"-ERR unknown command\r\n", False) == NOTHING
    assert parse_redis(b"HTTP/1.1 400 Bad Request\r\n\r\n", False) == NOTHING
    assert parse_redis(b"+OK POP3 ready\r\n", False) == NOTHING
    assert parse_redis(TLS_ALERT, False) == Answer(tls_seen=True)
    assert parse_redis(b"+PON", True) == NOTHING


# --- MongoDB ------------------------------------------------------------------------------------


def test_hello_is_an_op_msg_for_admin() -> None:
    message = split_message(HELLO)
    assert message is not None
    request_id, response_to, opcode, body = message
    assert (request_id, response_to, opcode) == (REQUEST_ID, 0, 2013)
    assert msg_document(body) == {"hello": 1, "$db": "admin"}
    assert next(iter(msg_document(body))) == "hello"  # the command name must come first


def test_mongo_reply_split_anywhere() -> None:
    reply = op_msg(
        {"isWritablePrimary": True, "topologyVersion": {"processId": bson.ObjectId(b"x" * 12),
         "counter": bson.Int64(0)}, "localTime": datetime(2026, 1, 2, tzinfo=UTC),
         "maxWireVersion": 21, "minWireVersion": 0, "ok": 1.0},
        request_id=9, response_to=REQUEST_ID,
    )  # fmt: skip
    answer = feed(parse_mongo, reply)
    assert answer.detection == Detection(
        "mongodb", version="wire 21", detail="MongoDB, wire 21, writable primary"
    )


def test_mongo_secondary_router_and_failed_hello() -> None:
    def detection(document: bson.Document) -> Detection | None:
        answer = parse_mongo(op_msg(document, 5, response_to=REQUEST_ID), False)
        assert answer is not None
        return answer.detection

    secondary = detection({"isWritablePrimary": False, "secondary": True, "maxWireVersion": 17,
                           "ok": 1})  # fmt: skip
    assert secondary is not None and secondary.detail == "MongoDB, wire 17, secondary"
    router = detection({"isWritablePrimary": True, "msg": "isdbgrid", "maxWireVersion": 21,
                        "ok": 1.0})  # fmt: skip
    assert router is not None and router.detail == "MongoDB, wire 21, mongos router"
    failed = detection({"ok": 0.0, "errmsg": "no such command: 'hello'", "code": 59})
    assert failed == Detection("mongodb", detail="MongoDB, hello failed: no such command: 'hello'")


def test_mongo_probe_rejects_other_replies() -> None:
    other_request = op_msg({"ok": 1.0}, 5, response_to=REQUEST_ID + 1)
    assert parse_mongo(other_request, False) == NOTHING
    assert parse_mongo(b"HTTP/1.1 400 Bad Request\r\n\r\n", False) == NOTHING
    assert parse_mongo(b"\x00" * 3, True) == NOTHING
    regex = b"\x0br\x00a\x00\x00"  # {"r": /a/}: a type a hello reply never has
    document = struct.pack("<i", len(regex) + 5) + regex + b"\x00"
    body = b"\x00\x00\x00\x00\x00" + document
    header = struct.pack("<iiii", 16 + len(body), 5, REQUEST_ID, 2013)
    assert parse_mongo(header + body, False) == NOTHING


# --- BSON ---------------------------------------------------------------------------------------


def test_bson_round_trip() -> None:
    document: bson.Document = {
        "int": 1, "neg": -(2**31), "big": 2**40, "long": bson.Int64(3), "float": 1.5,
        "str": "héllo", "bool": False, "none": None, "bin": b"\x00\x01",
        "oid": bson.ObjectId(bytes(range(12))), "when": datetime(2027, 1, 1, tzinfo=UTC),
        "ts": bson.Timestamp(1700000000, 3), "doc": {"a": [1, "two", {"three": 3.0}]},
    }  # fmt: skip
    decoded = bson.decode(bson.encode(document))
    assert decoded == document
    assert type(decoded["long"]) is bson.Int64 and type(decoded["big"]) is bson.Int64
    assert type(decoded["oid"]) is bson.ObjectId


def test_bson_known_bytes() -> None:
    # {"hello": 1} as the BSON spec's own examples lay it out.
    assert bson.encode({"hello": 1}) == b"\x10\x00\x00\x00\x10hello\x00\x01\x00\x00\x00\x00"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x05\x00\x00", b"\x04\x00\x00\x00\x00", b"\x0c\x00\x00\x00\x10a\x00\x01\x00\x00\x00",
     b"\x08\x00\x00\x00\x13a\x00\x00", b"\x0d\x00\x00\x00\x02a\x00\xff\x00\x00\x00x\x00",
     bson.encode({"a": 1}) + b"\x00"],
)  # fmt: skip
def test_bson_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ProbeError):
        bson.decode(data)


# --- HTTP ---------------------------------------------------------------------------------------


def test_head_request_names_the_host() -> None:
    request = head_request("db.example.com")
    assert request.startswith(b"HEAD / HTTP/1.1\r\nHost: db.example.com\r\n")
    assert request.endswith(b"\r\n\r\n")


def test_http_head_split_anywhere() -> None:
    reply = b"HTTP/1.1 204 No Content\r\nDate: x\r\nServer: nginx/1.25.3\r\n\r\n"
    answer = feed(parse_head, reply)
    assert answer == Answer(
        Detection("http", version="nginx/1.25.3", detail="HTTP 204, nginx/1.25.3")
    )


def test_http_400_to_a_good_head_is_a_sign_of_tls() -> None:
    answer = parse_head(b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n", False)
    assert answer is not None and answer.tls_seen and answer.detection is not None
    go_reply = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    go = parse_head(go_reply, True)
    assert go is not None and go.tls_seen


def test_http_probe_rejects_other_protocols() -> None:
    assert parse_head(b"+PONG\r\n", False) == NOTHING
    assert parse_head(b"HTTP/2 200\r\n\r\n", False) == NOTHING
    assert parse_head(TLS_ALERT, False) == Answer(tls_seen=True)
    assert parse_head(b"HTT", True) == NOTHING


# --- server-first greetings ---------------------------------------------------------------------


def test_mariadb_greeting_split_anywhere() -> None:
    greeting = mariadb_greeting(b"5.5.5-10.11.6-MariaDB-0+deb12u1")
    for end in range(len(greeting)):
        assert parse_greeting(greeting[:end], False) is None
    found = parse_greeting(greeting, False)
    assert found == Detection(
        "mysql", version="10.11.6-MariaDB-0+deb12u1", detail="MariaDB 10.11.6, accepts TLS"
    )


def test_mysql_greeting_without_tls() -> None:
    greeting = mariadb_greeting(b"8.0.36", capabilities=0xF7FE)  # 0x0800 CLIENT_SSL clear
    found = parse_greeting(greeting, False)
    assert found == Detection("mysql", version="8.0.36", detail="MySQL 8.0.36")


def test_mysql_error_packet_in_place_of_greeting() -> None:
    payload = b"\xff\x6a\x04Host '10.0.0.9' is not allowed to connect to this MariaDB server"
    found = parse_greeting(len(payload).to_bytes(3, "little") + b"\x00" + payload, False)
    assert found is not None and found.protocol == "mysql"
    assert found.detail.endswith("Host '10.0.0.9' is not allowed to connect to this MariaDB server")


def test_other_banners_are_tcp_with_their_first_line() -> None:
    banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
    for end in range(len(banner) - 1):
        assert parse_greeting(banner[:end], False) is None
    ssh = parse_greeting(banner, False)
    assert ssh == Detection("tcp", detail="SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
    smtp = parse_greeting(b"220 mail.example.com ESMTP\r\n", False)
    assert smtp == Detection("tcp", detail="220 mail.example.com ESMTP")
    assert parse_greeting(b"\x01\x02", True) == Detection(
        "tcp", detail="server sent 2 unprintable bytes first"
    )


# --- shared helpers -----------------------------------------------------------------------------


def test_tls_signs() -> None:
    assert tls_seen(TLS_ALERT)
    nginx = b"HTTP/1.1 400 Bad Request\r\n\r\n<center>The plain HTTP request was sent to HTTPS port"
    assert tls_seen(nginx)
    assert not tls_seen(b"\x15")
    assert not tls_seen(b"HTTP/1.1 200 OK\r\n\r\n")


def test_first_line_drops_unprintables() -> None:
    assert first_line(b"\r\n\x00\x07 hello\tworld \r\nnext") == "helloworld"
    assert first_line(b"x" * 500) == "x" * 120


@pytest.mark.parametrize(
    ("protocol", "port", "hint"),
    [(None, 5432, "postgres"), ("auto", 3306, "mysql"), (None, 6379, "redis"),
     (None, 27017, "mongodb"), (None, 8080, "http"), (None, 443, "https"), (None, 12345, None),
     ("https", 5432, "postgres"), ("tls", 6379, "redis"), ("https", 9999, "https"),
     ("postgresql", 15432, "postgres"), ("mariadb", None, "mysql"), ("tcp", 80, "http")],
)  # fmt: skip
def test_hint_from(protocol: str | None, port: int | None, hint: str | None) -> None:
    assert hint_from(protocol, port) == hint


def test_probe_order() -> None:
    available = ["postgres", "redis", "mongodb", "http"]
    assert probe_order(None, available) == available
    assert probe_order("redis", available) == ["redis", "postgres", "mongodb", "http"]
    assert probe_order("mysql", available) == available  # server-first: the greeting covers it
    assert probe_order("https", available) == ["https", *available]
    assert normalize_hint(" Mongo ") == "mongodb"
    assert normalize_hint("udp") is None
