"""`FirstMessage` on a real session, both loops: a stream's opening frame read off its first
bytes however it is cut, the bytes behind it held without credit until a sink takes them, and
what ends a stream before its frame."""

from __future__ import annotations

from dataclasses import dataclass, field

from portway.net.mux import MuxConnection
from portway.net.mux_opening import FirstMessage
from portway.net.mux_stream import MuxStream
from portway.wire.assignment_messages import Assign, AssignMode
from portway.wire.codes import Reason
from portway.wire.control_messages import Protocol
from portway.wire.flow import INITIAL_WINDOW
from portway.wire.messages import Message, encode

from .harness import Harness, wait_until

ASSIGN = Assign(
    conn="c1", mode=AssignMode.DIAL, tunnel="t1", protocol=Protocol.TCP, host="10.0.0.5",
    port=5432,
)  # fmt: skip
FRAME = encode(ASSIGN)


@dataclass
class Opened:
    """What the accepting end saw: each stream's first message, or how it ended before one."""

    streams: list[MuxStream] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    ended: list[Reason | None] = field(default_factory=list)

    def on_open(self, stream: MuxStream, first: memoryview) -> int:
        self.streams.append(stream)
        Reader(stream, self)
        return 0


class Reader(FirstMessage):
    __slots__ = ("opened",)

    def __init__(self, stream: MuxStream, opened: Opened) -> None:
        self.opened = opened
        super().__init__(stream)

    def message_received(self, message: Message) -> None:
        self.opened.messages.append(message)

    def ended(self, reason: Reason | None) -> None:
        self.opened.ended.append(reason)


class Collect:
    """A sink that takes everything at once (and credits it)."""

    def __init__(self, stream: MuxStream) -> None:
        self.stream = stream
        self.data = bytearray()

    def stream_data(self, data: memoryview) -> None:
        self.data += data
        self.stream.consumed(len(data))

    def stream_eof(self) -> None:
        pass

    def stream_reset(self, code: int) -> None:
        pass

    def pause_source(self) -> None:
        pass

    def resume_source(self) -> None:
        pass


def held(stream: MuxStream) -> int:
    return sum(map(len, stream._held))


async def test_a_frame_cut_anywhere_is_read_and_what_follows_waits_uncredited(
    harness: Harness,
) -> None:
    opened = Opened()
    dialling = await harness.session(opened.on_open)
    behind = b"visitor bytes" * 1000

    async def one(cut: int) -> None:
        count = len(opened.streams)
        stream = dialling.open_stream(FRAME[:cut])
        await wait_until(lambda: len(opened.streams) > count, "the stream opened")
        stream.write(FRAME[cut:] + behind)
        await wait_until(lambda: len(opened.messages) > count, "the frame read")
        assert opened.messages[-1] == ASSIGN
        accepted = opened.streams[-1]
        await wait_until(lambda: held(accepted) == len(behind), "the bytes behind it held")
        assert accepted.sink is None
        # Credit came back for the frame's bytes at most: the sender still owes the window
        # everything behind them, until a sink takes them.
        assert dialling.session.send_window(stream.id) <= INITIAL_WINDOW - len(behind)
        sink = Collect(accepted)
        accepted.attach(sink)
        assert bytes(sink.data) == behind
        stream.write(b"more")
        await wait_until(lambda: sink.data.endswith(b"more"), "later bytes to the sink")

    for cut in (1, 4, 5, 6, len(FRAME) - 1, len(FRAME)):
        await one(cut)
    assert not opened.ended


async def test_a_broken_frame_resets_the_stream_with_protocol_error(harness: Harness) -> None:
    opened = Opened()
    dialling = await harness.session(opened.on_open)
    codes: list[int] = []

    class Watch(Collect):
        def stream_reset(self, code: int) -> None:
            codes.append(code)

    for bad in (
        b"\x00\x00\x00\x02\x7f{}",  # an unknown message type
        b"\x00\x00\x00\x03\x20{x}",  # an assign that is not JSON
        b"\x01\x00\x00\x00\x20",  # longer than any opening message may be
    ):
        count = len(codes)
        stream = dialling.open_stream(bad)
        stream.attach(Watch(stream))
        await wait_until(lambda: len(codes) > count, "the reset to come back")  # noqa: B023
        assert codes[-1] == Reason.PROTOCOL_ERROR
        assert opened.ended[-1] is Reason.PROTOCOL_ERROR
    assert not opened.messages


async def test_a_stream_that_ends_before_its_frame_says_how(harness: Harness) -> None:
    opened = Opened()
    dialling = await harness.session(opened.on_open)
    finished = dialling.open_stream(FRAME[:3])
    finished.write_eof()
    await wait_until(lambda: opened.ended == [None], "the FIN")
    reset = dialling.open_stream(FRAME[:3])
    await wait_until(lambda: len(opened.streams) == 2, "the second stream")
    reset.reset(Reason.GONE)
    await wait_until(lambda: opened.ended == [None, Reason.GONE], "the RST and its reason")
    assert not opened.messages
    connection: MuxConnection = dialling
    assert connection.transport is not None, "the session stays up"


async def test_a_syn_framed_after_reads_leaves_without_anything_behind_it(
    harness: Harness,
) -> None:
    # A server-first visitor sends nothing: its stream must open all the same.
    opened = Opened()
    dialling = await harness.session(opened.on_open)
    dialling.open_stream(FRAME, after_reads=True)
    await wait_until(lambda: opened.messages == [ASSIGN], "the assign alone")
