"""The frame type byte of every control-stream and assignment message.

:class:`MessageType` is the registry: each message class (:mod:`portway.wire.control_messages`,
:mod:`portway.wire.assignment_messages`) names its byte as ``TYPE``, and the decoder
(:mod:`portway.wire.messages`) looks classes up by it. Retired bytes stay listed as reserved.
"""

from __future__ import annotations

import enum


class MessageType(enum.IntEnum):
    """The frame type byte of each message."""

    CONTROL_HELLO = 0x01
    CHANNEL_HELLO = 0x02
    WELCOME = 0x03
    REFUSED = 0x04
    DESIRED_STATE = 0x10
    STATUS = 0x11
    COUNTERS = 0x12
    PING = 0x13
    PONG = 0x14
    # 0x15 was OPEN_CHANNELS (version 1's pool top-up): reserved, never to be reused.
    REACH_OPEN = 0x16
    REACH_REJECT = 0x17
    GOODBYE = 0x1F
    ASSIGN = 0x20
    ASSIGN_OK = 0x21
    ASSIGN_ERROR = 0x22
    DIAGNOSIS = 0x23
    DIRECT_OPEN = 0x24
