"""Sans-IO session of the multiplexed data plane (wire version 2): many streams, one connection.

:class:`MuxSession` is the state machine both ends run, the agent (which dialled the connection,
``client=True``, opens odd stream ids) and the hub (``client=False``, even ids); the agent's and
the hub's links create one per connection and hand it to :class:`~portway.net.mux.MuxConnection`.
This module holds its contract (below) and what the owner can inspect; the session is composed
of modules one concept each:

* :mod:`~portway.wire.mux_events` and :mod:`~portway.wire.mux_errors`: what the owner gets back;
* :mod:`~portway.wire.mux_sending`: the owner's actions and the frames they become;
* :mod:`~portway.wire.mux_receiving`: the parser of the peer's frames, and
  :mod:`~portway.wire.mux_inbound`: what each of them does to the streams;
* :mod:`~portway.wire.mux_state`: the fields the halves share, :mod:`~portway.wire.mux_stream`:
  one stream's record;
* header layout and constants: :mod:`~portway.wire.mux_frames`; window arithmetic:
  :mod:`~portway.wire.flow`.

The owner (an asyncio protocol in :mod:`portway.net`) drives it like this::

    events = session.receive_data(data, now)   # from data_received; act on every event
    for ev in events: ...                      # write DataReceived to its destination socket,
                                               # then session.consumed(id, n, now) once taken
    transport.writelines(session.data_to_send())   # after *every* call that changes state
    for stream_id in session.writable_streams(): resume reading that stream's source

and, for each local source socket: ``session.send(id, chunk)``, then pause reading it while
``session.send_buffered(id) > HIGH_WATER`` (resume when :meth:`MuxSession.writable_streams`
names it; the water marks are in :mod:`~portway.wire.mux_sending`). ``data_to_send`` yields at
most ``max_bytes`` of stream data per call: call it again (until it returns ``[]``) whenever the
transport can take more, e.g. from ``resume_writing``.

Errors: a peer that breaks the protocol makes :meth:`MuxSession.receive_data` raise
:class:`~portway.wire.errors.ProtocolError` (``code`` is ``"protocol_error"`` or
``"flow_control_error"``). Before raising, the session queues a ``GO_AWAY`` with that code and
drops everything else: the owner writes ``data_to_send()`` once more and closes the transport.
The session is then closed for good: ``receive_data`` raises the same error again,
``open_stream`` raises :class:`SessionClosed`, ``data_to_send`` returns ``[]`` once the
``GO_AWAY`` went out, and every other method is a no-op. Events decoded from the same call before
the offending frame are lost; the owner tears every stream down anyway.

Decisions where the design left room (see also the module docs of ``flow`` and ``mux_frames``):

* Inbound streams are accepted automatically; the ``ACK`` rides on the first frame this side
  sends for the stream (``DATA`` if any goes out in the same call, otherwise a
  ``WINDOW_UPDATE``). A SYN is refused with ``RST`` (code :data:`RESET_LIMIT`) beyond
  ``max_streams`` live inbound streams, beyond ``syn_rate`` accepted SYNs per second (token
  bucket, burst = one second's worth), or when the budget cannot hold another
  :data:`INITIAL_WINDOW`; after a local :meth:`MuxSession.go_away`, every SYN is refused with
  ``Reason.CLOSED``. Refusal is never a session error.
* Every live stream reserves its receive window from the budget, locally opened ones too:
  :meth:`MuxSession.open_stream` raises :class:`LimitReached` when the budget is full (open the
  stream on another session). With the defaults (64 MiB / 256 KiB) that is 256 streams whose
  peer has not finished sending; a direction the peer has finished (FIN) only holds what the
  application has not consumed yet.
* The first frame from the peer on a stream this side opened must carry ``ACK`` (or be an
  ``RST``: a refusal). A frame on a stream id at or below the highest one opened, but no longer
  live (reset or finished), is ignored: it crossed a reset on the wire.
* After this side sent or received ``GO_AWAY``, ``open_stream`` raises :class:`SessionClosed`.
  A SYN from a peer after its own ``GO_AWAY`` is a protocol error.
"""

from __future__ import annotations

from portway.wire.errors import ProtocolError
from portway.wire.mux_receiving import ReceivingHalf
from portway.wire.mux_sending import SendingHalf

__all__ = ["MuxSession"]


class MuxSession(ReceivingHalf, SendingHalf):
    """One v2 session (either end). Not thread-safe; one owner drives every call.

    ``client`` is True on the side that dialled the connection (the agent). ``budget`` caps the
    sum of receive windows, ``max_streams`` the live streams the peer opened, ``syn_rate`` the
    streams per second the peer may open (excess SYNs are refused with an ``RST``).

    The owner's actions and :meth:`data_to_send` come from
    :class:`~portway.wire.mux_sending.SendingHalf`, :meth:`receive_data` from
    :class:`~portway.wire.mux_receiving.ReceivingHalf` and :meth:`consumed` from its base
    :class:`~portway.wire.mux_inbound.InboundFrames`; the fields they share, and the constructor,
    from :class:`~portway.wire.mux_state.SessionState`.
    """

    # -- introspection ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the peer broke the protocol (see :attr:`error`)."""
        return self._error is not None

    @property
    def error(self) -> ProtocolError | None:
        return self._error

    @property
    def going_away(self) -> bool:
        """True once a ``GO_AWAY`` was sent or received: no new streams on this session."""
        return self._local_go_away or self._remote_go_away

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time from answered pings; None before the first answer."""
        return self._rtt.smoothed

    @property
    def stream_count(self) -> int:
        """Live streams (either side opened). With :attr:`going_away`, 0 means the owner may
        close the connection once ``data_to_send`` is empty."""
        return len(self._streams)

    @property
    def budget_reserved(self) -> int:
        """How far the live streams' receive windows grew beyond :data:`INITIAL_WINDOW`."""
        return self._budget.reserved

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def send_buffered(self, stream_id: int) -> int:
        """Bytes queued by :meth:`send` and not yet framed (0 for a stream that is gone)."""
        st = self._streams.get(stream_id)
        return st.buffered if st is not None else 0

    def send_window(self, stream_id: int) -> int:
        """Credit the peer has granted for this stream (0 for a stream that is gone)."""
        st = self._streams.get(stream_id)
        return st.send_window if st is not None else 0

    def receive_window(self, stream_id: int) -> int:
        """This side's current receive window for the stream (grows with auto-tuning)."""
        st = self._streams.get(stream_id)
        return st.rx.size if st is not None else 0

    @property
    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` may return something (possibly a false positive)."""
        return bool(self._control or self._ctl or self._syn_queue or self._go_away or self._ready)
