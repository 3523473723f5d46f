"""What every part of the hub shares: configuration, presence, the ticker, the share access log.

`hub/dataplane` and `hub/edge` import from here, never from the hub root, which is only the
composition root (`hub/server.py`) and the services it alone starts.
"""
