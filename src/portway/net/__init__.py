"""Thin asyncio layer over :mod:`portway.wire`.

* :mod:`~portway.net.splice`: relay between two transports (raw or framed) with backpressure;
* :mod:`~portway.net.mux` (version 2): a session's transport carrying many streams, and
  :mod:`~portway.net.mux_socket`, the splice of a socket with a stream;
* :mod:`~portway.net.framed`: message-level connections for control sessions and handshakes;
* :mod:`~portway.net.tls`: the hub's CA and certificates, server and pinned client contexts.
"""
