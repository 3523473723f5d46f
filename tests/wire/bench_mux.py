"""Micro-benchmark of the v2 mux session (sans-IO, in memory). Not collected by pytest.

Run: ``.venv/bin/python tests/wire/bench_mux.py [GiB] [round trips]``. Two sessions are wired back
to back; every hop joins the outbound buffers into one ``bytes`` (what ``writelines`` on a TLS
transport does), so the numbers include that copy but no TLS and no sockets.

* bulk: one stream (then 8 sharing the session, 16 KiB turns each) moves the given amount in
  64 KiB writes, the receiver consuming at once;
* round trips: 100-byte messages echoed by the other side, one at a time.
"""

from __future__ import annotations

import sys
import time

from portway.wire.mux import MuxSession
from portway.wire.mux_events import DataReceived, StreamOpened
from portway.wire.mux_sending import HIGH_WATER

GIB = 1 << 30


def bulk(total: int, streams: int = 1, write: int = 64 * 1024) -> float:
    """Move ``total`` bytes client -> server over ``streams`` streams; return GB/s."""
    client = MuxSession(client=True)
    server = MuxSession(client=False)
    chunk = bytes(write)
    ids = [client.open_stream() for _ in range(streams)]
    share = total // streams
    sent = dict.fromkeys(ids, 0)
    received = 0
    total = share * streams
    clock = time.perf_counter
    start = clock()
    while received < total:
        for sid in ids:
            while sent[sid] < share and client.send_buffered(sid) <= HIGH_WATER:
                client.send(sid, chunk)
                sent[sid] += write
        now = clock()
        out = client.data_to_send()
        if out:
            for ev in server.receive_data(b"".join(out), now):
                if isinstance(ev, DataReceived | StreamOpened):  # the SYN carries data too
                    n = len(ev.data)
                    received += n
                    server.consumed(ev.stream_id, n, now)
        back = server.data_to_send()
        if back:
            client.receive_data(b"".join(back), now)
    elapsed = clock() - start
    return total / elapsed / 1e9


def round_trips(count: int, size: int = 100) -> float:
    """Echo ``count`` messages of ``size`` bytes one at a time; return messages per second."""
    client = MuxSession(client=True)
    server = MuxSession(client=False)
    message = bytes(size)
    sid = client.open_stream()
    server.receive_data(b"".join(client.data_to_send()), 0.0)
    client.receive_data(b"".join(server.data_to_send()), 0.0)
    clock = time.perf_counter
    start = clock()
    for _ in range(count):
        now = clock()
        client.send(sid, message)
        for ev in server.receive_data(b"".join(client.data_to_send()), now):
            if isinstance(ev, DataReceived):
                server.send(sid, ev.data)
                server.consumed(sid, len(ev.data), now)
        for ev in client.receive_data(b"".join(server.data_to_send()), now):
            if isinstance(ev, DataReceived):
                client.consumed(sid, len(ev.data), now)
    elapsed = clock() - start
    return count / elapsed


def main() -> None:
    gib = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    print(f"bulk, {gib:g} GiB in 64 KiB writes, 1 stream: {bulk(int(gib * GIB)):.2f} GB/s")
    print(f"bulk, {gib:g} GiB in 64 KiB writes, 8 streams: {bulk(int(gib * GIB), 8):.2f} GB/s")
    print(f"round trips of 100 B messages: {round_trips(count):,.0f} msgs/s")


if __name__ == "__main__":
    main()
