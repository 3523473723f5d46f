"""The hub's data plane: agent sessions, channel pools, pairing, public ports, desired state.

`DataPlane` (in `plane.py`) is what `Hub` starts and stops; nothing here touches the store on
the per-connection path except through the periodic batches (`statuses.py`, `counters.py`).
"""
