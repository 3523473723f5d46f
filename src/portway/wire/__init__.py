"""Sans-IO codecs of the agent ↔ hub wire protocol (bytes in, events out; no asyncio here).

* :mod:`~portway.wire.frames`: connection preface and ``[u32 len][u8 type][payload]`` frames;
* :mod:`~portway.wire.messages`: control and assignment messages (JSON payloads) and their reader;
  the messages themselves are in :mod:`~portway.wire.control_messages` and
  :mod:`~portway.wire.assignment_messages`, their type bytes in :mod:`~portway.wire.message_types`;
* :mod:`~portway.wire.datagram`: datagram framing of a stream assigned to UDP;
* :mod:`~portway.wire.heartbeat`: ping scheduling and dead-peer detection;
* :mod:`~portway.wire.codes`: reason codes shared by all of them;
* :mod:`~portway.wire.mux` (version 2): many streams over one session (its module docs list the
  ``mux_*`` modules it is made of), with its frame header codec in :mod:`~portway.wire.mux_frames`
  and window accounting in :mod:`~portway.wire.flow`.

The byte layouts are documented in ``docs/protocol.md``.
"""

from portway.wire.codes import Reason, SessionCode
from portway.wire.errors import ProtocolError

__all__ = ["ProtocolError", "Reason", "SessionCode"]
