"""What repositories raise; the API turns these into 404 and 409 responses."""


class StoreError(Exception):
    pass


class NotFound(StoreError):
    """No such row in this workspace (another workspace's row looks exactly like a missing one)."""


class Duplicate(StoreError):
    """A unique name is already taken in this scope."""
