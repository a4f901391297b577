"""HTTPS transport: GET with retries and backoff, bearer-token auth that survives redirects.

Retries with exponential backoff on 5xx, 429, timeouts, connection resets and bodies cut short.
A 401 asks the token provider for a fresh token once, then raises :class:`AuthenticationError`
(distinct from missing data); 404/410 raise :class:`GranuleNotFoundError`. NASA Earthdata answers
downloads with redirects to other hosts: ``requests`` drops the Authorization header on any
cross-host redirect, so :class:`TrustedSession` keeps it for hosts in ``trusted_hosts`` only (and
never over plain http to a non-loopback host). The same rule decides whether the first request
carries it: a source on another host (CHIRPS at UCSB) never sees the token. Tokens never appear in
logs or exceptions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import requests
import urllib3

from etl.errors import AuthenticationError, FetchError, GranuleNotFoundError

log = logging.getLogger(__name__)

TokenProvider = Callable[[bool], str | None]
"""Returns the bearer token; called with True to ask for a fresh one after a 401."""

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class TrustedSession(requests.Session):
    """A session that keeps the Authorization header across redirects between trusted hosts."""

    def __init__(self, trusted_hosts: tuple[str, ...]) -> None:
        super().__init__()
        self.trusted_hosts = trusted_hosts

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        if "Authorization" in prepared_request.headers and not may_carry_token(
            prepared_request.url or "", self.trusted_hosts
        ):
            del prepared_request.headers["Authorization"]


def may_carry_token(url: str, trusted_hosts: tuple[str, ...]) -> bool:
    """Whether a request to ``url`` may carry the Earthdata token: a trusted host (or a subdomain
    of one) over https, or over http on the loopback interface (a local fake or mirror)."""
    target = urlsplit(url)
    host = target.hostname or ""
    trusted = any(host == h or host.endswith("." + h) for h in trusted_hosts)
    return trusted and (target.scheme == "https" or host in _LOOPBACK)


@dataclass
class HttpClient:
    """GET with retries. ``sleep`` is injectable so tests need not wait for real backoff."""

    token: TokenProvider | None = None
    trusted_hosts: tuple[str, ...] = ("earthdata.nasa.gov", "earthdatacloud.nasa.gov")
    retries: int = 5
    backoff_s: float = 2.0
    max_backoff_s: float = 120.0
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 120.0
    user_agent: str = "smapds"
    sleep: Callable[[float], None] = time.sleep
    _session: TrustedSession | None = field(default=None, init=False, repr=False)

    @property
    def session(self) -> TrustedSession:
        if self._session is None:
            self._session = TrustedSession(self.trusted_hosts)
            self._session.headers["User-Agent"] = self.user_agent
        return self._session

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        """GET a JSON document; returns (document, response headers)."""
        response = self._request(url, params=params, headers=headers, stream=False)
        try:
            return response.json(), response.headers
        except ValueError as err:
            raise FetchError(f"{_safe(url)}: response is not JSON") from err

    def get_text(self, url: str) -> str:
        """GET a text document (a directory index)."""
        response = self._request(url, stream=False)
        return response.text

    def download(self, url: str, out: BinaryIO) -> int:
        """Stream ``url`` into ``out`` (rewound and truncated before each attempt); bytes written."""
        attempt = 0
        while True:
            response = self._request(url, stream=True)
            expected = response.headers.get("Content-Length")
            out.seek(0)
            out.truncate()
            written = 0
            try:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
                    written += len(chunk)
                if expected is not None and written != int(expected):
                    raise requests.exceptions.ChunkedEncodingError(
                        f"body cut short: {written} of {expected} bytes"
                    )
                return written
            except (
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
            ) as err:
                attempt = self._backoff(url, attempt, _reason(err))
            finally:
                response.close()

    def _request(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool,
    ) -> requests.Response:
        attempt = 0
        refreshed = False
        while True:
            hdrs = dict(headers or {})
            token = (
                self.token(refreshed)
                if self.token is not None and may_carry_token(url, self.trusted_hosts)
                else None
            )
            if token:
                hdrs["Authorization"] = f"Bearer {token}"
            try:
                response = self.session.get(
                    url,
                    params=params,
                    headers=hdrs,
                    stream=stream,
                    allow_redirects=True,
                    timeout=(self.connect_timeout_s, self.read_timeout_s),
                )
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
                attempt = self._backoff(url, attempt, type(err).__name__)
                continue
            status = response.status_code
            if status == 401:
                response.close()
                if self.token is not None and not refreshed:
                    refreshed = True
                    log.info(
                        "401 from provider; refreshing credentials once", extra={"url": _safe(url)}
                    )
                    continue
                raise AuthenticationError(
                    f"{_safe(url)}: authentication failed (HTTP 401) — check the Earthdata token"
                )
            if status in (404, 410):
                response.close()
                raise GranuleNotFoundError(f"{_safe(url)}: HTTP {status}")
            if status in _RETRY_STATUS:
                response.close()
                attempt = self._backoff(url, attempt, f"HTTP {status}")
                continue
            if status >= 400:
                response.close()
                raise FetchError(f"{_safe(url)}: HTTP {status}")
            return response

    def _backoff(self, url: str, attempt: int, reason: str) -> int:
        if attempt >= self.retries:
            raise FetchError(f"{_safe(url)}: giving up after {attempt + 1} attempts ({reason})")
        delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        log.warning(
            "retrying",
            extra={"url": _safe(url), "reason": reason, "delay_s": delay, "attempt": attempt + 1},
        )
        self.sleep(delay)
        return attempt + 1


def _reason(err: requests.exceptions.RequestException) -> str:
    """What went wrong, by class name. A body that stops arriving is a ``ReadTimeout``, as is a
    host that never sends its headers: while streaming, requests wraps urllib3's read timeout in
    a ``ConnectionError``, which would send an operator looking for a network fault instead of a
    stalled provider. (Only the name: exception texts can carry a signed URL.)"""
    if any(isinstance(a, urllib3.exceptions.ReadTimeoutError) for a in err.args):
        return "ReadTimeout"
    return type(err).__name__


def _safe(url: str) -> str:
    """A URL without query string or userinfo (they can carry credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
