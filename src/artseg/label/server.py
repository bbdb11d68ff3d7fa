"""HTTP for `artseg label`: the page, its static files and the JSON API, routed to a LabelSession.

The standard library's ThreadingHTTPServer is enough here: one person on their own machine, a
handful of requests per label, nothing to deploy. It adds no dependency, starts instantly, and a
thread per request keeps a slow preview render from blocking the page's other requests; the
session's own lock makes concurrent requests (two tabs) safe.

    GET  /                          the page
    GET  /static/<file>             its script and style sheet
    GET  /api/next                  {"item", "upcoming", "recent", "stats"}
    GET  /api/item?filename=F       one image (the arrow keys revisit earlier ones)
    GET  /api/stats                 counts, splits, labels per minute
    GET  /api/preview?filename=F    JPEG at screen size
    GET  /api/overlay?filename=F    PNG of the model's predicted mask (404 without --model)
    POST /api/label  {"filename": F, "label": "clean" | "artefact" | "skip"}  -> as /api/next
    POST /api/undo                  -> as /api/next, plus "undone"

Mask mode (`--masks` / `--scribbles`, `artseg.label.strokes`):

    GET  /api/strokes?filename=F    {"filename", "mode", "width", "height", "strokes": [...]}
    POST /api/stroke  {"filename": F, "value": "artefact" | "clean" | "erase", "radius": R,
                       "points": [[x, y], ...], "fill": false}   (full-resolution pixels; fill: a lasso)
                      -> {"filename", "strokes", "label", "stats"}
    POST /api/stroke/undo  {"filename": F}        -> as /api/stroke (409 when the image has no stroke)
    POST /api/stroke/model {"filename": F}        -> as /api/stroke: the model's mask as a stroke (with --model)
    GET  /api/live/status?filename=F  (--live) {"version", "ready", "seconds", "trained_on", "error"}
    GET  /api/live?filename=F         (--live) PNG of the live forest's mask (404 until the first)

A bad request gets a 4xx and {"error": "<one line>"} and changes nothing.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from artseg.io import ImageReadError
from artseg.label.app import LabelSession
from artseg.label.store import LabelError, UnknownImageError

MAX_BODY = 64 * 1024  # a label request is ~100 bytes
MAX_STROKE_BODY = 2 * 1024 * 1024  # a stroke of MAX_POINTS points, as JSON
POST_ROUTES = ("/api/label", "/api/undo", "/api/stroke", "/api/stroke/undo", "/api/stroke/model")
# Content types of the package's own static files (label/static/), served, never written: not layout.py's.
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class RequestError(Exception):
    """An HTTP error answer: status and one-line message."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def _static_files() -> dict[str, bytes]:
    folder = resources.files("artseg.label") / "static"
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.name.rsplit(".", 1)[-1] in ("html", "js", "css")}


def make_handler(session: LabelSession, loopback_only: bool) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `session` (http.server builds one handler per request)."""
    static = _static_files()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the page's requests reuse one connection
        server_version = "artseg-label"

        def log_message(self, format, *args):  # noqa: A002 (http.server's name)
            pass  # a line per preview would bury the URL the user needs

        # --- plumbing ------------------------------------------------------------------------------
        def _send(self, status: HTTPStatus, body: bytes, content_type: str, cache: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            # A preview never changes within a session; the API answers always do.
            self.send_header("Cache-Control", "private, max-age=3600" if cache else "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, data: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def _handle(self, route: Callable[[], None]) -> None:
            try:
                if loopback_only:
                    self._check_host()
                route()
            except RequestError as exc:
                self._json({"error": str(exc)}, exc.status)
            except UnknownImageError as exc:
                self._json({"error": str(exc)}, HTTPStatus.NOT_FOUND)
            except LabelError as exc:
                self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
            except ImageReadError as exc:
                self._json({"error": str(exc)}, HTTPStatus.UNPROCESSABLE_ENTITY)

        def _check_host(self) -> None:
            # Another web site could make the browser send requests here under its own name (DNS
            # rebinding); a server on loopback answers only requests addressed to loopback.
            host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
            try:
                ok = ipaddress.ip_address(host).is_loopback
            except ValueError:
                ok = host in LOOPBACK_NAMES
            if not ok:
                raise RequestError(HTTPStatus.FORBIDDEN, f"host {host!r} refused: open the URL artseg label printed")

        def _query_filename(self) -> str:
            values = parse_qs(urlsplit(self.path).query).get("filename")
            if not values:
                raise RequestError(HTTPStatus.BAD_REQUEST, "missing ?filename=")
            return values[0]

        def _body(self, limit: int = MAX_BODY) -> dict:
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                # Also a guard: a cross-site form cannot send application/json without the browser asking first.
                raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise RequestError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
            if length > limit:
                self.close_connection = True  # the unread body must not be parsed as the next request
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {limit} bytes")
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                data = json.loads(raw or b"{}")
            except ValueError as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"malformed JSON ({exc})") from None
            if not isinstance(data, dict):
                raise RequestError(HTTPStatus.BAD_REQUEST, "expected a JSON object")
            return data

        # --- routes --------------------------------------------------------------------------------
        def do_GET(self):  # noqa: N802 (http.server's name)
            self._handle(self._get)

        def do_POST(self):  # noqa: N802
            self._handle(self._post)

        def _get(self) -> None:
            path = urlsplit(self.path).path
            if path == "/":
                path = "/static/index.html"
            if path.startswith("/static/"):
                name = path.removeprefix("/static/")
                if name not in static:  # a fixed set of names: nothing from the URL reaches the file system
                    raise RequestError(HTTPStatus.NOT_FOUND, f"{path}: no such file")
                self._send(HTTPStatus.OK, static[name], STATIC_TYPES["." + name.rsplit(".", 1)[-1]])
            elif path == "/api/next":
                self._json(session.next())
            elif path == "/api/stats":
                self._json(session.stats())
            elif path == "/api/live/status":
                self._json(session.live_status(self._query_filename()))
            elif path == "/api/live":
                png = session.live_png(self._query_filename())
                if png is None:
                    raise RequestError(HTTPStatus.NOT_FOUND, "no live preview of this image yet")
                self._send(HTTPStatus.OK, png, "image/png")
            elif path == "/api/strokes":
                self._json(session.image_strokes(self._query_filename()))
            elif path == "/api/item":
                self._json(session.item(self._query_filename()))
            elif path == "/api/preview":
                self._send(HTTPStatus.OK, session.preview(self._query_filename()), "image/jpeg", cache=True)
            elif path == "/api/overlay":
                png = session.overlay(self._query_filename())
                if png is None:
                    raise RequestError(HTTPStatus.NOT_FOUND, "no model: start artseg label with --model for overlays")
                self._send(HTTPStatus.OK, png, "image/png", cache=True)
            else:
                raise RequestError(HTTPStatus.NOT_FOUND, f"{path}: no such page")

        def _post(self) -> None:
            path = urlsplit(self.path).path
            if path not in POST_ROUTES:
                raise RequestError(HTTPStatus.NOT_FOUND, f"{path}: no such API")
            body = self._body(MAX_STROKE_BODY if path == "/api/stroke" else MAX_BODY)
            if path == "/api/label":
                self._json(session.label(body.get("filename"), body.get("label")))
                return
            if path == "/api/stroke":
                self._json(session.stroke(body.get("filename"), body.get("value"), body.get("radius"), body.get("points"),
                                          body.get("fill", False)))
                return
            if path == "/api/stroke/model":
                self._json(session.model_stroke(body.get("filename")))
                return
            if path == "/api/stroke/undo":
                answer = session.undo_stroke(body.get("filename"))
                if answer is None:
                    raise RequestError(HTTPStatus.CONFLICT, "no stroke to undo on this image")
                self._json(answer)
                return
            answer = session.undo()
            if answer is None:
                raise RequestError(HTTPStatus.CONFLICT, "nothing to undo")
            self._json(answer)

    return Handler


def make_server(session: LabelSession, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """Bind (port 0: any free port) and return the server; call `serve_forever()` on it.

    Parameters
    ----------
    session : LabelSession
        The labelling session to serve.
    host, port : str, int
        Address to listen on.

    Returns
    -------
    ThreadingHTTPServer
        Its `server_address` holds the bound port.
    """
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in LOOPBACK_NAMES
    # socketserver's default backlog of 5 resets connections when a browser opens its 6 at once per tab.
    attributes = {"request_queue_size": 64, "daemon_threads": True}  # daemon: keep-alive must not block Ctrl-C
    if ":" in host:  # an IPv6 address such as ::1
        attributes["address_family"] = socket.AF_INET6
    server_class = type("LabelHTTPServer", (ThreadingHTTPServer,), attributes)
    server = server_class((host, port), make_handler(session, loopback_only=loopback))
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"
