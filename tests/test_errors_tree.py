"""The error tree stays whole: every Portway exception is a `PortwayError` in exactly one family,
and the API's one handler maps each family to its status in the one error document."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import portway
from portway import errors
from portway.api import problems
from portway.errors import FAMILIES, PortwayError

# Derives from `PortwayError` but from no family, on purpose: raised inside an httptools callback
# to stop llhttp at a HEAD response's head (httptools has no other way to say "no body") and
# caught by the same parser's `_feed`; it is control flow, not an error anyone sees. A family
# would claim a status it must never get: if it ever leaked, 500 is right.
FAMILY_LESS = {"portway.hub.edge.http1.connections._HeadDone"}
# Still subclasses of these builtins, for callers that catch them.
BUILTIN_BASES = {
    "portway.errors.InvalidInput": ValueError,
    "portway.net.framed.ConnectionClosed": ConnectionError,
    "portway.net.mux_transport.StreamResetError": ConnectionResetError,
}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _exception_classes() -> Iterator[type[BaseException]]:
    """Every exception class defined in a `portway` module, after importing them all."""
    seen: set[type[BaseException]] = set()
    for info in pkgutil.walk_packages(portway.__path__, "portway."):
        if info.name.endswith(".__main__"):
            continue  # runs the CLI
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and value not in seen
            ):
                seen.add(value)
                yield value


CLASSES = sorted(_exception_classes(), key=_name)


def test_the_walk_finds_every_layer() -> None:
    layers = {cls.__module__.split(".")[1] for cls in CLASSES}
    # `api` defines none: routers raise the families themselves.
    assert layers == {"agent", "cli", "domain", "errors", "hub", "net", "probe", "store", "wire"}


@pytest.mark.parametrize("cls", CLASSES, ids=_name)
def test_every_exception_is_a_portway_error_of_one_family(cls: type[BaseException]) -> None:
    assert issubclass(cls, PortwayError), f"{_name(cls)} is not a PortwayError"
    if cls is PortwayError:
        return
    families = [family for family in FAMILIES if issubclass(cls, family)]
    if _name(cls) in FAMILY_LESS:
        assert families == []
    else:
        assert len(families) == 1, f"{_name(cls)} is in {families}"


@pytest.mark.parametrize("cls", CLASSES, ids=_name)
def test_every_exception_has_a_snake_case_code(cls: type[BaseException]) -> None:
    assert issubclass(cls, PortwayError)
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", cls.code), cls.code


def test_the_families_are_the_roots_only_children() -> None:
    children = {_name(cls) for cls in PortwayError.__subclasses__()}
    assert children == {_name(family) for family in FAMILIES} | FAMILY_LESS


def test_no_two_exceptions_share_a_name() -> None:
    names: dict[str, list[str]] = {}
    for cls in CLASSES:
        names.setdefault(cls.__name__, []).append(_name(cls))
    assert {name: where for name, where in names.items() if len(where) > 1} == {}


@pytest.mark.parametrize(("name", "builtin"), BUILTIN_BASES.items())
def test_builtin_bases_are_kept(name: str, builtin: type[BaseException]) -> None:
    (cls,) = [cls for cls in CLASSES if _name(cls) == name]
    assert issubclass(cls, builtin)


def test_errors_imports_nothing_of_portway() -> None:
    source = inspect.getsource(errors)
    assert not re.search(r"^\s*(from|import)\s+portway", source, re.MULTILINE)


def test_a_field_error_shows_the_bare_message_and_lists_the_field() -> None:
    exc = errors.InvalidInput("must be positive", field="limit")
    assert str(exc) == "must be positive"
    assert exc.details == [{"field": "limit", "message": "must be positive", "type": "limit"}]


# -- the API's handler ----------------------------------------------------------------------------

CASES: list[tuple[PortwayError, int, dict[str, Any]]] = [
    (errors.NotFound("no such thing"), 404, {"code": "not_found", "message": "no such thing"}),
    (errors.Gone("it went", code="thing_gone"), 410, {"code": "thing_gone", "message": "it went"}),
    (errors.Conflict("taken", code="x_taken"), 409, {"code": "x_taken", "message": "taken"}),
    (errors.InvalidInput("bad"), 422, {"code": "validation_failed", "message": "bad"}),
    (errors.ConfigError("bad flag"), 422, {"code": "invalid_config", "message": "bad flag"}),
    (errors.Unauthorized("who?"), 401, {"code": "unauthorized", "message": "who?"}),
    (errors.Forbidden("no", code="admin_only"), 403, {"code": "admin_only", "message": "no"}),
    (errors.Unavailable("later"), 503, {"code": "unavailable", "message": "later"}),
    (errors.ProtocolViolation("garbled"), 400, {"code": "protocol_error", "message": "garbled"}),
    (
        errors.Conflict("taken", details={"id": "1"}),
        409,
        {"code": "conflict", "message": "taken", "details": {"id": "1"}},
    ),
    (
        errors.InvalidInput("too big", field="size"),
        422,
        {
            "code": "validation_failed",
            "message": "size: too big",
            "details": [{"field": "size", "message": "too big", "type": "size"}],
        },
    ),
]


def _app_raising(exc: BaseException) -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise exc

    return app


async def _get(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        return await client.get("/boom")


@pytest.mark.parametrize(("exc", "status", "error"), CASES, ids=lambda v: repr(v)[:40])
async def test_each_family_has_its_status_and_the_document(
    exc: PortwayError, status: int, error: dict[str, Any]
) -> None:
    response = await _get(_app_raising(exc))
    assert response.status_code == status
    assert response.json() == {"error": {"details": None, **error}}
    assert problems.status_of(exc) == status
    challenge = response.headers.get("www-authenticate")
    assert challenge == ("Bearer" if status == 401 else None)


def test_every_family_has_a_status_but_the_client_one() -> None:
    unmapped = [f for f in FAMILIES if f not in problems.STATUS]
    assert unmapped == [errors.ClientError]


@pytest.mark.parametrize(
    "exc", [errors.ClientError("hub said no"), errors.PortwayError("bare")], ids=repr
)
async def test_an_error_of_no_mapped_family_is_an_internal_error(exc: PortwayError) -> None:
    response = await _get(_app_raising(exc))
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "the hub failed to handle this request",
            "details": None,
        }
    }
