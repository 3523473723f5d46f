"""Tests of the asyncio layer in :mod:`portway.net`, over real loopback sockets."""
