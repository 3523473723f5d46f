"""Thin asyncio layer over :mod:`portway.wire`.

* :mod:`~portway.net.agent_port`: the hub's listener that reads each preface, and the agent's
  dial of a version 2 session;
* :mod:`~portway.net.mux`: a session's transport carrying many streams;
  :mod:`~portway.net.mux_transport`, a stream seen as an asyncio transport;
  :mod:`~portway.net.mux_socket`, a socket joined to its stream (the fast path);
  :mod:`~portway.net.mux_bridge`, two streams relayed to each other (the hub's reach path);
* :mod:`~portway.net.splice`: relay between two transports of plain bytes with backpressure;
* :mod:`~portway.net.framed`: the message level of a stream's framed phase (control stream,
  ``assign``/``assign_ok``) and :mod:`~portway.net.control`, the control loop on it;
* :mod:`~portway.net.udp`: datagram framing on a stream, UDP sessions and listeners;
* :mod:`~portway.net.tls`: the hub's CA and certificates, server and pinned client contexts.
"""
