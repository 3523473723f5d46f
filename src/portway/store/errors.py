"""What the store's repositories raise, as members of `portway.errors` families.

Each raise site passes the `code` (and, where a request field named the row, the `field` and
`details`) the API shows, so routers let these propagate to `portway.api.problems` untouched.
The repositories' own errors live next to them: `tunnels.HubPortTaken`, `tunnels.NoFreeHubPort`,
`connections.LocalPortTaken`, `api_keys.LastKey` (Conflict) and `pages.BadCursor`
(InvalidInput).
"""

from portway.errors import Conflict, NotFound


class NoSuchRow(NotFound):
    """No such row in this scope (another workspace's row looks exactly like a missing one).

    Raised by every repository's `get`; the code names the kind (`tunnel_not_found`, ...).
    """


class Duplicate(Conflict):
    """A value that must be unique in its scope is taken (a name; `tunnels.HubPortTaken`...).

    Raised by the `create` and `update` functions; the code names the kind
    (`tunnel_name_taken`, ...).
    """

    code = "name_taken"
