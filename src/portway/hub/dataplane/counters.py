"""Traffic counters reach the store in batches, never per connection.

`DataPlane.start()` runs `flush()` every `STATS_FLUSH_SECONDS` (a `Ticker`, which logs a
failed write; it is retried on the next tick); `DataPlane.stop()` calls it once more after the
last connection has ended, so nothing counted is lost.
"""

from __future__ import annotations

from portway.hub.dataplane.traffic import Traffic
from portway.store import Database, tunnels

STATS_FLUSH_SECONDS = 2.0


async def flush(db: Database, traffic: Traffic) -> None:
    """Add the counters gathered since the last flush to each tunnel's stored totals."""
    deltas = traffic.drain()
    if not deltas:
        return
    async with db.session() as session:
        for tunnel_id, d in deltas.items():
            await tunnels.add_stats(
                session, tunnel_id, opened=d.opened, closed=d.closed, bytes_in=d.bytes_in,
                bytes_out=d.bytes_out, last_connection_at=d.last_connection_at,
                datagrams_in=d.datagrams_in, datagrams_out=d.datagrams_out,
                datagrams_dropped=d.datagrams_dropped,
            )  # fmt: skip
