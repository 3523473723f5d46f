"""How every command reports what it did: a JSON document with --json, else text for people.

Commands do not test `--json` themselves. They hand an :class:`Output` the document and a way
to say it for people, and it prints exactly one of the two:

    api.output.result(created, f"Created API key {created['name']} ({created['id']}).")
    api.output.result(items, lambda: table(items, COLUMNS))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

# The result for people: the text itself, or a function that prints it (a table) or returns
# it (text worth building only when it is shown; None shows nothing).
Human = str | Callable[[], str | None]


class Output:
    """Where one command's results go; made from its `--json` flag."""

    def __init__(self, as_json: bool) -> None:
        self._json = as_json

    def result(self, document: Any, human: Human, *, err: bool = False) -> None:
        """The command's result: `document` as indented JSON with --json, else `human`.

        `err` sends the text for people to stderr: a note about output they get elsewhere
        (a written file), which must not mix with it.
        """
        self._emit(document, 2, human, err)

    def line(self, document: Any, human: Human, *, err: bool = False) -> None:
        """One result of a stream (followed events, the agent's state changes): `document` as
        one JSON line with --json, else `human`."""
        self._emit(document, None, human, err)

    def _emit(self, document: Any, indent: int | None, human: Human, err: bool) -> None:
        if self._json:
            click.echo(json.dumps(document, indent=indent))
            return
        text = human() if callable(human) else human
        if text is not None:
            click.echo(text, err=err)
