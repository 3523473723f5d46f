"""The hub's REST API as Python calls, used by the CLI and by agents.

Tests swap the transport (``httpx.MockTransport`` or an ASGI transport) instead of mocking
this class. Errors come out as `portway.errors.ApiError` or `HubUnreachable`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from portway import __version__
from portway.errors import ApiError, ConfigError, HubUnreachable

DEFAULT_TIMEOUT = 10.0


def normalise_hub_url(url: str) -> str:
    """Validate a hub URL given by a user and strip any trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"hub URL must look like http://HOST:PORT, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ConfigError(f"hub URL {url!r} has an invalid port") from None
    return url.strip().rstrip("/")


def error_from_response(response: httpx.Response) -> ApiError:
    """Turn a hub error response into an ApiError (tolerating non-Portway bodies)."""
    try:
        body = response.json()
        err = body["error"]
        return ApiError(
            response.status_code, str(err["code"]), str(err["message"]), err.get("details")
        )
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(
            response.status_code, "http_error", f"hub answered {response.status_code}: {text}"
        )


class PortwayClient:
    """Synchronous client; one instance per command invocation."""

    def __init__(
        self,
        hub_url: str,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.hub_url = normalise_hub_url(hub_url)
        headers = {"User-Agent": f"portway/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.hub_url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> PortwayClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request; returns the decoded JSON body (None for 204)."""
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException:
            raise HubUnreachable(f"hub at {self.hub_url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise HubUnreachable(f"cannot reach the hub at {self.hub_url}: {exc}") from None
        if response.status_code >= 400:
            raise error_from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code, "bad_response", "hub sent a non-JSON answer"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def paginate(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, following `nextCursor`."""
        cursor: str | None = None
        while True:
            page = self.get(path, limit=200, cursor=cursor, **params)
            yield from page["items"]
            cursor = page.get("nextCursor")
            if not cursor:
                return
