"""Sans-IO MongoDB probe: the `hello` command in an OP_MSG, and its reply.

Used through `client_probes()` by the runner, and by `portway.testing.mongo_origin` (the test
server) for the message framing. Wire format: a 16-byte header (int32 messageLength, requestID,
responseTo, opCode; little endian), then for OP_MSG (opCode 2013) uint32 flagBits and sections;
we send and read one kind-0 section, a single BSON document.
"""

from __future__ import annotations

import struct

from portway.probe import bson
from portway.probe.protocols import Answer, Probe, first_line, not_this
from portway.probe.results import Detection, ProbeError

OP_MSG = 2013
HEADER = struct.Struct("<iiii")
MAX_MESSAGE = 48_000_000  # mongod's maxMessageSizeBytes
REQUEST_ID = 0x50_57_50_52  # any id will do; the reply's responseTo must echo it


def op_msg(document: bson.Document, request_id: int, response_to: int = 0) -> bytes:
    """One OP_MSG carrying `document` as its body section (no checksum)."""
    body = struct.pack("<I", 0) + b"\x00" + bson.encode(document)
    return HEADER.pack(HEADER.size + len(body), request_id, response_to, OP_MSG) + body


def split_message(data: bytes) -> tuple[int, int, int, bytes] | None:
    """(requestID, responseTo, opCode, body) of the message at the start of `data`.

    None when incomplete; ProbeError when the header cannot be MongoDB's.
    """
    if len(data) < HEADER.size:
        return None
    length, request_id, response_to, opcode = HEADER.unpack_from(data)
    if not HEADER.size < length <= MAX_MESSAGE:
        raise ProbeError(f"message length {length} is not MongoDB's")
    if len(data) < length:
        return None
    return request_id, response_to, opcode, data[HEADER.size : length]


def msg_document(body: bytes) -> bson.Document:
    """The body (kind 0) document of an OP_MSG body; raises ProbeError when there is none."""
    if len(body) < 5:
        raise ProbeError("OP_MSG too short")
    (flags,) = struct.unpack_from("<I", body)
    pos = 4
    while pos < len(body) - (4 if flags & 1 else 0):  # flag bit 0: a CRC-32C trails
        kind = body[pos]
        size = bson.document_size(body, pos + 1)
        if size is None:
            raise ProbeError("OP_MSG section truncated")
        if kind == 0:
            return bson.decode(body[pos + 1 : pos + 1 + size])
        if kind != 1:
            raise ProbeError(f"unknown OP_MSG section kind {kind}")
        pos += 1 + size  # kind 1: a document sequence, prefixed by its own int32 size
    raise ProbeError("OP_MSG without a body section")


HELLO = op_msg({"hello": 1, "$db": "admin"}, REQUEST_ID)


def parse_mongo(data: bytes, eof: bool) -> Answer | None:
    """The reply to HELLO: an OP_MSG answering our request id, read for wire version and role."""
    try:
        message = split_message(data)
        if message is None:
            return not_this(data) if eof else None
        _, response_to, opcode, body = message
        if response_to != REQUEST_ID or opcode != OP_MSG:
            return not_this(data)
        reply = msg_document(body)
    except ProbeError:
        return not_this(data)
    if reply.get("ok") not in (1, 1.0, True):
        reason = first_line(str(reply.get("errmsg", "error")).encode())
        return Answer(Detection("mongodb", detail=f"MongoDB, hello failed: {reason}"))
    wire = reply.get("maxWireVersion")
    version = f"wire {wire}" if isinstance(wire, int) and not isinstance(wire, bool) else None
    if reply.get("msg") == "isdbgrid":
        role = "mongos router"
    elif reply.get("isWritablePrimary", reply.get("ismaster")) is True:
        role = "writable primary"
    elif reply.get("secondary") is True:
        role = "secondary"
    else:
        role = "not writable"
    detail = ", ".join(part for part in ("MongoDB", version, role) if part)
    return Answer(Detection("mongodb", version=version, detail=detail))


MONGODB = Probe("mongodb", HELLO, parse_mongo)
