"""Share path policy with no I/O: normalise a request path and match whole-segment prefixes.

The edge (`portway.hub.edge.router`) calls `allowed(raw_path, prefixes)` for every request on a
share with `allowedPaths`. A path the normaliser cannot read safely is refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

_HEX = "0123456789abcdefABCDEF"
# Escapes that would change the path's structure once a server decodes them: '/', '\' and NUL.
_STRUCTURAL = {"2f", "5c", "00"}


def normalise(raw: str) -> str | None:
    """The request path (query and fragment dropped) percent-decoded and with `.`/`..` resolved.

    Returns None for a path to refuse: not absolute, a malformed escape, or an escape of `/`,
    `\\` or NUL (the classic tricks to smuggle a segment past a prefix check), or a literal `\\`.
    `..` above the root stays at the root, as servers treat it.
    """
    path = raw.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/") or "\\" in path:
        return None
    out: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char == "%":
            code = path[i + 1 : i + 3]
            if len(code) != 2 or any(c not in _HEX for c in code) or code.lower() in _STRUCTURAL:
                return None
            out.append(chr(int(code, 16)))
            i += 3
        else:
            out.append(char)
            i += 1
    segments: list[str] = []
    parts = "".join(out).split("/")[1:]
    for index, segment in enumerate(parts):
        last = index == len(parts) - 1
        if segment == ".":
            if last:
                segments.append("")
        elif segment == "..":
            if segments:
                segments.pop()
            if last:
                segments.append("")
        else:
            segments.append(segment)
    return "/" + "/".join(segments)


def matches(path: str, prefix: str) -> bool:
    """Whether normalised `path` lies under `prefix` by whole segments (`/api` covers `/api`
    and `/api/x`, never `/api-admin`)."""
    base = prefix.rstrip("/")
    return path == base or path.startswith(base + "/") or (base == "" and path.startswith("/"))


def allowed(raw: str, prefixes: Sequence[str] | None) -> bool:
    """Whether a request for `raw` passes a share's `allowedPaths` (None allows every path)."""
    if prefixes is None:
        return True
    path = normalise(raw)
    return path is not None and any(matches(path, prefix) for prefix in prefixes)
