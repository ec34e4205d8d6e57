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

import http.client
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


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Engine:
    """One daemon; requests go one at a time over one kept-alive connection."""

    def __init__(self, base_url: str | None = None, timeout: float = 120.0) -> None:
        self.url = engine_url(base_url)
        problem = check_url(self.url)
        if problem:
            raise ValueError(problem)
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        t = self.timeout if timeout is None else timeout
        if parts.scheme == "unix":
            return _UnixConnection(parts.path, t)
        return http.client.HTTPConnection(parts.hostname or "localhost", parts.port or 2375, timeout=t)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                timeout: float | None = None) -> Any:
        """The decoded JSON answer (None for an empty one); EngineError for an error status,
        EngineUnreachable when the daemon cannot be reached."""
        target = path + ("?" + urlencode(query) if query else "")
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in (1, 2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connection()
            conn = self._conn
            if timeout is not None and conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(method, target, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if reused and attempt == 1:  # the daemon closed an idle connection: once more, afresh
                    continue
                raise EngineUnreachable(f"the Docker daemon at {self.url} closed the connection ({e})") from e
            except OSError as e:
                self.close()
                raise EngineUnreachable(f"cannot reach the Docker daemon at {self.url}: {e}") from e
            finally:
                if timeout is not None and conn.sock is not None:
                    conn.sock.settimeout(self.timeout)
            if resp.status >= 400:
                raise EngineError(resp.status, _message(data) or f"HTTP {resp.status} for {method} {path}")
            if not data:
                return None
            return json.loads(data) if "json" in (resp.getheader("Content-Type") or "") else data.decode(errors="replace")
        raise AssertionError("unreachable")

    def hijack(self, path: str, query: dict[str, Any]) -> socket.socket:
        """A raw stream to the daemon (an attach): the request is upgraded and the socket
        returned, for the caller to write to and close."""
        conn = self._connection()
        try:
            conn.connect()
            assert conn.sock is not None
            sock: socket.socket = conn.sock
            request = (f"POST {path}?{urlencode(query)} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
                       f"Upgrade: tcp\r\nContent-Length: 0\r\n\r\n")
            sock.sendall(request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                piece = sock.recv(4096)
                if not piece:
                    raise EngineUnreachable(f"the Docker daemon at {self.url} closed the attach stream")
                head += piece
                if len(head) > 65536:
                    raise EngineError(502, "an attach answer without an end of its headers")
        except OSError as e:
            conn.close()
            if isinstance(e, EngineUnreachable):
                raise
            raise EngineUnreachable(f"cannot reach the Docker daemon at {self.url}: {e}") from e
        status_line, _, rest = head.partition(b"\r\n")
        status = int(status_line.split()[1]) if len(status_line.split()) > 1 else 0
        if status not in (101, 200):
            conn.close()
            raise EngineError(status, _message(rest.partition(b"\r\n\r\n")[2]) or status_line.decode(errors="replace"))
        conn.sock = None  # the socket is the caller's now
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
