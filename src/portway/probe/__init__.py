"""Protocol probes: what really runs behind a tunnel's target ("detected means detected").

The agent calls `detect(opener, hint=hint_from(protocol, port))` when a tunnel starts serving
and on demand; the result is stored on the tunnel. Sans-IO parsers live in protocols.py,
databases.py, mongo.py and http.py; runner.py does the asyncio part.
"""

from portway.probe.protocols import hint_from
from portway.probe.results import Detection, ProbeError, TlsDetails
from portway.probe.runner import Opener, detect

__all__ = ["Detection", "Opener", "ProbeError", "TlsDetails", "detect", "hint_from"]
