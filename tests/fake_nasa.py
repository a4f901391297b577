"""A fake NASA on 127.0.0.1 for tests: CMR granule search (UMM-G JSON, Search-After paging) and a
download host with a bearer-token check, redirects, and injectable faults per file: 503s, bodies cut
short or promised and never sent, answers that stall after their headers, requests never answered,
and a CMR that refuses the token or lists granules of another collection version."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = "good-token"


@dataclass
class FakeNasa:
    """Files by name; behaviours per name; a log of requests.

    ``cmr_items`` are UMM-G items; a search returns those whose ``TemporalExtent`` begins on the
    searched day (items without one match every search) and whose short name matches, if given.
    """

    files: dict[str, bytes]
    fail_first: dict[str, int] = field(default_factory=dict)  # name -> 503s before success
    truncate_first: dict[str, int] = field(default_factory=dict)  # name -> cut bodies first
    requests: list[str] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    cmr_items: list[dict[str, object]] = field(default_factory=list)
    cmr_short_name: str | None = None
    base: str = ""
    empty_first: dict[str, int] = field(default_factory=dict)  # name -> headers, then no body
    stall_first: dict[str, int] = field(default_factory=dict)  # name -> half a body, then stall
    silent_first: dict[str, int] = field(default_factory=dict)  # name -> never answered
    cmr_silent_first: int = 0  # searches never answered
    cmr_requires_token: bool = False  # searches without the good token get a 401
    cmr_auth_headers: list[str | None] = field(default_factory=list)
    cmr_queries: list[dict[str, list[str]]] = field(default_factory=list)
    stall_seconds: float = 30.0  # how long a stalled or silent answer waits (or until released)
    released: threading.Event = field(default_factory=threading.Event)

    def downloads(self) -> list[str]:
        return [r for r in self.requests if r.startswith("/data/")]

    def add_granule(
        self,
        name: str,
        body: bytes,
        *,
        day: str,
        size: int | None = None,
        md5: str | None = None,
        version: str | None = None,
    ) -> None:
        """Serve ``body`` as ``name`` and list it in CMR for ``day`` (YYYY-MM-DD); with
        ``version``, only a search for that collection version (or for none) lists it."""
        import hashlib

        self.files[name] = body
        info: dict[str, object] = {"Name": name, "SizeInBytes": len(body) if size is None else size}
        info["Checksum"] = {"Algorithm": "MD5", "Value": md5 or hashlib.md5(body).hexdigest()}
        self.cmr_items.append(
            {
                "meta": {"concept-id": f"G{len(self.cmr_items)}"},
                "umm": {
                    "GranuleUR": name,
                    "TemporalExtent": {
                        "RangeDateTime": {"BeginningDateTime": f"{day}T00:00:00.000Z"}
                    },
                    "RelatedUrls": [{"Type": "GET DATA", "URL": f"{self.base}/redirect/{name}"}],
                    "DataGranule": {"ArchiveAndDistributionInformation": [info]},
                    **({"CollectionReference": {"Version": version}} if version else {}),
                },
            }
        )

    def withdraw(self, name: str) -> None:
        """The provider removes ``name`` from CMR and from the download host."""
        self.files.pop(name, None)
        self.cmr_items = [i for i in self.cmr_items if _name(i) != name]

    def _take(self, faults: dict[str, int], name: str) -> bool:
        if faults.get(name, 0) > 0:
            faults[name] -= 1
            return True
        return False


def _handler(nasa: FakeNasa) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            nasa.requests.append(parts.path)
            if parts.path == "/search/granules.umm_json":
                nasa.cmr_auth_headers.append(self.headers.get("Authorization"))
                if nasa.cmr_silent_first > 0:
                    nasa.cmr_silent_first -= 1
                    return self._hang()
                if nasa.cmr_requires_token and self.headers.get("Authorization") != (
                    f"Bearer {TOKEN}"
                ):
                    return self._send(401, b'{"errors": ["Token is expired"]}')
                return self._cmr(parse_qs(parts.query))
            if parts.path.startswith("/redirect/"):
                self.send_response(302)
                self.send_header("Location", f"{nasa.base}/data/{parts.path.rsplit('/', 1)[-1]}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            name = parts.path.rsplit("/", 1)[-1]
            nasa.auth_headers.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, b"unauthorized")
            if nasa.fail_first.get(name, 0) > 0:
                nasa.fail_first[name] -= 1
                return self._send(503, b"busy")
            if nasa._take(nasa.silent_first, name):
                return self._hang()
            if name not in nasa.files:
                return self._send(404, b"not found")
            body = nasa.files[name]
            if nasa._take(nasa.empty_first, name):
                return self._promise(body, b"")
            if nasa._take(nasa.stall_first, name):
                self._promise(body, body[: len(body) // 2], close=False)
                return self._hang()
            if nasa.truncate_first.get(name, 0) > 0:
                nasa.truncate_first[name] -= 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return None
            return self._send(200, body)

        def _cmr(self, query: dict[str, list[str]]) -> None:
            nasa.cmr_queries.append(query)
            if nasa.cmr_short_name is not None and query["short_name"] != [nasa.cmr_short_name]:
                return self._send(200, json.dumps({"hits": 0, "items": []}).encode())
            day = query["temporal"][0][:10]
            wanted = query.get("version", [None])[0]
            items = [
                i
                for i in nasa.cmr_items
                if _begins(i) in (None, day) and _version(i) in (None, wanted)
            ]
            size = int(query["page_size"][0])
            start = int(self.headers.get("CMR-Search-After") or 0)
            body = json.dumps({"hits": len(items), "items": items[start : start + size]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if start + size < len(items):
                self.send_header("CMR-Search-After", str(start + size))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _promise(self, body: bytes, sent: bytes, *, close: bool = True) -> None:
            """Headers for all of ``body``, then only ``sent`` (and, with ``close``, hang up)."""
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(sent)
            self.wfile.flush()
            self.close_connection = close

        def _hang(self) -> None:
            """Say nothing more for ``stall_seconds`` (or until the server stops), then hang up."""
            nasa.released.wait(nasa.stall_seconds)
            self.close_connection = True

    return Handler


def _name(item: dict[str, object]) -> str | None:
    umm = item.get("umm")
    return str(umm.get("GranuleUR")) if isinstance(umm, dict) else None


def _version(item: dict[str, object]) -> str | None:
    umm = item.get("umm")
    if not isinstance(umm, dict):
        return None
    version = umm.get("CollectionReference", {}).get("Version")
    return str(version) if version else None


def _begins(item: dict[str, object]) -> str | None:
    umm = item.get("umm")
    if not isinstance(umm, dict):
        return None
    begin = umm.get("TemporalExtent", {}).get("RangeDateTime", {}).get("BeginningDateTime")
    return str(begin)[:10] if begin else None


@contextlib.contextmanager
def serving(fake: FakeNasa) -> Iterator[FakeNasa]:
    """Run ``fake`` on an ephemeral 127.0.0.1 port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.released.set()  # stalled answers give up, so no handler outlives the block
        server.shutdown()
        server.server_close()
