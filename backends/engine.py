"""A small client for the Docker Engine API, on the path every container run takes.

docker-py costs about 85 ms to import (requests, urllib3) and a few milliseconds per
call; `runctl submit` pays both before its job can start. What the Docker backend asks
for a run (inspect an image, create/attach/start/inspect/list/kill/remove a container,
the daemon's info and version) is a dozen plain HTTP requests, made here with the
standard library over one kept-alive connection to the daemon's Unix socket (or a
plain ``tcp://`` address). Pulling and building images stay with docker-py, which
knows registries' credentials and build contexts.

Paths carry no API version: the daemon then answers in its own current version, as
docker-py's ``version="auto"`` would after asking it; the fields runctl uses are old and
stable (API 1.25 and later).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_URL = "unix:///var/run/docker.sock"


class EngineError(Exception):
    """The daemon answered with an error status; ``message`` is what it said."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404


class EngineUnreachable(OSError):
    """No daemon answers at the address (or the socket is not ours to use)."""


def engine_url(base_url: str | None = None) -> str:
    return base_url or os.environ.get("DOCKER_HOST") or DEFAULT_URL


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be used (None when it can)."""
    scheme = urlsplit(url).scheme
    if scheme in ("unix", "tcp", "http"):
        return None
    return (f"{url!r}: the Docker backend talks to a daemon on this machine (unix://PATH) or over plain "
            f"tcp://HOST:PORT; its run directories are bind-mounted, so a daemon elsewhere (ssh://, TLS) "
            f"cannot see them: use an SSH compute target for another machine")


class _Closed(ConnectionError):
    """The daemon closed the connection before answering (after an idle spell: ask again)."""


class _Connection:
    """One HTTP/1.1 connection to the daemon (requests one at a time, each answer read
    whole: Content-Length, chunked, or up to the close). The standard library's http.client
    would do, at 11 ms of imports (email, ssl) on every `runctl submit`."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(parts.path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((parts.hostname or "localhost", parts.port or 2375), timeout)
        self.sock: socket.socket | None = sock
        self.buf = bytearray()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, method: str, target: str, payload: bytes | None, extra: str = "") -> None:
        assert self.sock is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: docker\r\n{extra}"
        if payload is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        elif method in ("POST", "PUT"):
            head += "Content-Length: 0\r\n"
        self.sock.sendall(head.encode("latin-1") + b"\r\n" + (payload or b""))

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(1 << 16)
        if not data:
            raise _Closed("the daemon closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > MAX_HEAD_BYTES:
                raise EngineError(502, "an answer line without an end")
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def head(self) -> tuple[int, dict[str, str]]:
        """The status and headers (names lower-cased) of the next answer."""
        parts = self._line().split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise EngineError(502, f"not an HTTP answer: {bytes(parts[0] if parts else b'')[:40]!r}")
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    def body(self, status: int, headers: dict[str, str]) -> bytes:
        if status in (204, 304) or 100 <= status < 200:
            return b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            out = bytearray()
            while size := int(self._line().split(b";")[0].strip() or b"0", 16):
                out += self._exactly(size)
                self._exactly(2)
            while self._line():  # trailers, up to the empty line
                pass
            return bytes(out)
        if "content-length" in headers:
            return self._exactly(int(headers["content-length"]))
        try:  # neither: the answer ends with the connection
            while True:
                self._fill()
        except _Closed:
            data = bytes(self.buf)
            self.buf.clear()
            self.close()
            return data


MAX_HEAD_BYTES = 1 << 16


class Engine:
    """One daemon; requests go one at a time over one kept-alive connection."""

    def __init__(self, base_url: str | None = None, timeout: float = 120.0) -> None:
        self.url = engine_url(base_url)
        problem = check_url(self.url)
        if problem:
            raise ValueError(problem)
        self.timeout = timeout
        self._conn: _Connection | None = None

    def _connect(self) -> _Connection:
        try:
            return _Connection(self.url, self.timeout)
        except OSError as e:
            raise EngineUnreachable(f"cannot reach the Docker daemon at {self.url}: {e}") from e

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None) -> Any:
        """The decoded JSON answer (None for an empty one); EngineError for an error status,
        EngineUnreachable when the daemon cannot be reached."""
        target = path + ("?" + urlencode(query) if query else "")
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._conn = self._conn or self._connect()
            try:
                conn.send(method, target, payload)
                status, headers = conn.head()
                data = conn.body(status, headers)
                if headers.get("connection", "").lower() == "close":
                    self.close()
            except (_Closed, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if reused and attempt == 1:  # the daemon closed an idle connection: once more, afresh
                    continue
                raise EngineUnreachable(f"the Docker daemon at {self.url} closed the connection ({e})") from e
            except OSError as e:
                self.close()
                raise EngineUnreachable(f"cannot reach the Docker daemon at {self.url}: {e}") from e
            except EngineError:  # an answer that could not be read: the connection is in no known state
                self.close()
                raise
            if status >= 400:
                raise EngineError(status, _message(data) or f"HTTP {status} for {method} {path}")
            if not data:
                return None
            return json.loads(data) if "json" in headers.get("content-type", "") else data.decode(errors="replace")
        raise AssertionError("unreachable")

    def hijack(self, path: str, query: dict[str, Any]) -> socket.socket:
        """A raw stream to the daemon (an attach): the request is upgraded and the socket
        returned, for the caller to write to and close."""
        conn = self._connect()
        try:
            conn.send("POST", f"{path}?{urlencode(query)}", None, "Connection: Upgrade\r\nUpgrade: tcp\r\n")
            status, headers = conn.head()
            if status not in (101, 200):
                raise EngineError(status, _message(conn.body(status, headers)) or f"HTTP {status} for an attach")
        except (OSError, EngineError) as e:
            conn.close()
            if isinstance(e, (EngineError, EngineUnreachable)):
                raise
            raise EngineUnreachable(f"cannot attach through the Docker daemon at {self.url}: {e}") from e
        sock, conn.sock = conn.sock, None  # the caller's now
        assert sock is not None
        return sock

    # -- what the Docker backend asks ------------------------------------------------------
    def image(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/images/{quote(name, safe='')}/json")  # type: ignore[no-any-return]

    def containers(self, labels: list[str], all: bool = True) -> list[dict[str, Any]]:
        filters = json.dumps({"label": labels})
        return self.request("GET", "/containers/json", {"all": int(all), "filters": filters})  # type: ignore[no-any-return]

    def inspect(self, container: str) -> dict[str, Any]:
        return self.request("GET", f"/containers/{quote(container, safe='')}/json")  # type: ignore[no-any-return]

    def create(self, name: str, body: dict[str, Any]) -> str:
        return self.request("POST", "/containers/create", {"name": name}, body)["Id"]  # type: ignore[no-any-return]

    def start(self, container: str) -> None:
        self.request("POST", f"/containers/{quote(container, safe='')}/start")

    def kill(self, container: str, signal: str) -> None:
        self.request("POST", f"/containers/{quote(container, safe='')}/kill", {"signal": signal})

    def remove(self, container: str) -> None:
        self.request("DELETE", f"/containers/{quote(container, safe='')}", {"force": 1, "v": 1})

    def attach_stdin(self, container: str) -> socket.socket:
        return self.hijack(f"/containers/{quote(container, safe='')}/attach", {"stream": 1, "stdin": 1})


def _message(data: bytes) -> str:
    try:
        said = json.loads(data)
    except ValueError:
        return data.decode(errors="replace").strip()
    return str(said.get("message", "")).strip() if isinstance(said, dict) else str(said)
