"""A small asyncio server that answers `hello` (and `isMaster`) over OP_MSG the way mongod does.

Debian ships no MongoDB server, so the probe tests detect this instead; the framing and BSON come
from `portway.probe.mongo`/`portway.probe.bson`, the reply fields from mongod 7.0 (wire 21).
Anything else is handled like mongod: an unknown command gets ``ok: 0`` with CommandNotFound, a
header whose length mongod would refuse closes the connection, other opcodes close it too.

    async with MongoOrigin() as origin:
        ...  # 127.0.0.1:origin.port
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any

from portway.probe import bson
from portway.probe.mongo import HEADER, MAX_MESSAGE, OP_MSG, msg_document, op_msg
from portway.probe.results import ProbeError
from portway.testing.stream_server import StreamServer


class MongoOrigin(StreamServer):
    """A mongod stand-in on 127.0.0.1:`port` (`StreamServer`); an async context manager."""

    def __init__(self, *, max_wire_version: int = 21, writable: bool = True) -> None:
        super().__init__()
        self.max_wire_version = max_wire_version
        self.writable = writable
        self.commands: list[str] = []  # the command names received, in order
        self._next_id = 1
        self._process_id = bson.ObjectId(os.urandom(12))

    def hello_reply(self, connection_id: int) -> bson.Document:
        """What mongod 7.0 says to `hello` as a standalone server (minus nothing we parse)."""
        return {
            "isWritablePrimary": self.writable, "secondary": not self.writable,
            "topologyVersion": {"processId": self._process_id, "counter": bson.Int64(0)},
            "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": MAX_MESSAGE,
            "maxWriteBatchSize": 100_000, "localTime": datetime.now(UTC),
            "logicalSessionTimeoutMinutes": 30, "connectionId": connection_id,
            "minWireVersion": 0, "maxWireVersion": self.max_wire_version, "readOnly": False,
            "ok": 1.0,
        }  # fmt: skip

    def _answer(self, command: bson.Document, connection_id: int) -> bson.Document:
        name = next(iter(command), "")
        self.commands.append(name)
        if name in ("hello", "isMaster", "ismaster"):
            reply = self.hello_reply(connection_id)
            if name != "hello":  # the legacy command names the role the legacy way
                reply = {"ismaster": reply.pop("isWritablePrimary"), **reply}
            return reply
        return {
            "ok": 0.0, "errmsg": f"no such command: '{name}'", "code": 59,
            "codeName": "CommandNotFound",
        }  # fmt: skip

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection_id = self._next_id
        self._next_id += 1
        while True:
            header = await reader.readexactly(HEADER.size)
            length, request_id, _, opcode = HEADER.unpack(header)
            if not HEADER.size < length <= MAX_MESSAGE or opcode != OP_MSG:
                return  # mongod drops connections that do not speak its protocol
            body = await reader.readexactly(length - HEADER.size)
            try:
                command = msg_document(body)
            except ProbeError:
                return
            reply: dict[str, Any] = self._answer(command, connection_id)
            writer.write(op_msg(reply, self._next_id, response_to=request_id))
            self._next_id += 1
            await writer.drain()
