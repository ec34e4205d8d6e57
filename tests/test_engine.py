"""runctl's Docker Engine API client (backends/engine.py) against canned HTTP answers on
a Unix socket: every way an answer can be framed, errors, a connection the daemon closed
while idle, an attach. (The Docker tests run it against the real daemon.)"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from runctl.backends.engine import Engine, EngineError, EngineUnreachable, check_url
from runctl.store.layout import services


class CannedDaemon:
    """Answers each request on a connection with the next canned bytes; ``None`` closes
    the connection instead of answering (an idle connection the daemon dropped)."""

    def __init__(self, path: Path, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.answers:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        piece = conn.recv(65536)
                        if not piece:
                            break
                        head += piece
                    if not head:
                        break
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    body = head.split(b"\r\n\r\n", 1)[1]
                    while len(body) < length:
                        body += conn.recv(65536)
                    self.requests.append(head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body)
                    answer = self.answers.pop(0)
                    if answer is None:
                        break
                    conn.sendall(answer)
                    if b"Connection: close" in answer.split(b"\r\n\r\n")[0]:
                        break

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "docker.sock"


def answer(status: str, body: bytes, headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}".encode() + b"\r\n" + body


def test_every_framing_of_an_answer(sock_path: Path) -> None:
    doc = json.dumps({"Id": "abc", "Name": "x" * 5000}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(doc[i:i + 700]), doc[i:i + 700]) for i in range(0, len(doc), 700))
    daemon = CannedDaemon(sock_path, [
        answer("200 OK", doc, f"Content-Type: application/json\r\nContent-Length: {len(doc)}\r\n"),
        answer("200 OK", chunked + b"0\r\nX-Trailer: 1\r\n\r\n", "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"),
        answer("204 No Content", b""),
        answer("200 OK", b"OK", "Content-Type: text/plain\r\nContent-Length: 2\r\n"),
        answer("200 OK", doc, "Content-Type: application/json\r\nConnection: close\r\n"),  # no length: up to the close
        answer("200 OK", b"{}", "Content-Type: application/json\r\nContent-Length: 2\r\n"),
    ])
    engine = Engine(f"unix://{sock_path}")
    try:
        assert engine.request("GET", "/a")["Id"] == "abc"
        assert engine.request("GET", "/b", {"all": 1, "filters": '{"label": ["x=y"]}'})["Name"] == "x" * 5000
        assert engine.request("POST", "/c/start") is None
        assert engine.request("GET", "/_ping") == "OK"
        assert engine.request("POST", "/create", {"name": "n"}, {"Image": "i", "Env": ["A=b c"]})["Id"] == "abc"
        assert engine.request("GET", "/after-close") == {}
    finally:
        engine.close()
        daemon.close()
    assert daemon.connections == 2, "one kept-alive connection, a new one after the daemon's close"
    assert b"GET /b?all=1&filters=%7B%22label%22%3A+%5B%22x%3Dy%22%5D%7D HTTP/1.1" in daemon.requests[1]
    assert daemon.requests[2].startswith(b"POST /c/start HTTP/1.1") and b"Content-Length: 0" in daemon.requests[2]
    assert daemon.requests[4].endswith(b'{"Image": "i", "Env": ["A=b c"]}')


def test_errors_name_what_the_daemon_said(sock_path: Path) -> None:
    said = json.dumps({"message": "No such image: nope:1"}).encode()
    daemon = CannedDaemon(sock_path, [
        answer("404 Not Found", said, f"Content-Type: application/json\r\nContent-Length: {len(said)}\r\n"),
        answer("500 Internal Server Error", b"boom", "Content-Length: 4\r\n"),
    ])
    engine = Engine(f"unix://{sock_path}")
    try:
        with pytest.raises(EngineError) as e:
            engine.image("nope:1")
        assert e.value.not_found and e.value.message == "No such image: nope:1"
        with pytest.raises(EngineError) as e:
            engine.request("GET", "/info")
        assert e.value.status == 500 and e.value.message == "boom" and not e.value.not_found
    finally:
        engine.close()
        daemon.close()
    assert daemon.requests[0].startswith(b"GET /images/nope%3A1/json HTTP/1.1")


def test_a_connection_dropped_while_idle_is_made_again_once(sock_path: Path) -> None:
    ok = answer("200 OK", b"{}", "Content-Type: application/json\r\nContent-Length: 2\r\n")
    daemon = CannedDaemon(sock_path, [ok, None, ok, None, None])
    engine = Engine(f"unix://{sock_path}")
    try:
        assert engine.request("GET", "/a") == {}
        assert engine.request("GET", "/b") == {}, "the dropped connection is replaced, the request sent again"
        with pytest.raises(EngineUnreachable):  # dropped, and dropped again on the fresh one: not retried twice
            engine.request("GET", "/c")
    finally:
        engine.close()
        daemon.close()


def test_no_daemon_and_addresses_elsewhere(tmp_path: Path) -> None:
    engine = Engine(f"unix://{tmp_path}/none.sock")
    with pytest.raises(EngineUnreachable) as e:
        engine.request("GET", "/_ping")
    assert "none.sock" in str(e.value)
    assert check_url("unix:///var/run/docker.sock") is None and check_url("tcp://127.0.0.1:2375") is None
    assert "SSH compute target" in (check_url("ssh://gpu-box") or "")
    with pytest.raises(ValueError):
        Engine("https://host:2376")


def test_an_attach_hands_over_the_raw_stream(sock_path: Path) -> None:
    got: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            got.append(head)
            conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                         b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            data = b""
            while piece := conn.recv(4096):
                data += piece
            got.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    sock = Engine(f"unix://{sock_path}").attach_stdin("abc")
    sock.sendall(b"go\n{}")
    sock.close()
    thread.join(10)
    server.close()
    assert got[0].startswith(b"POST /containers/abc/attach?stream=1&stdin=1 HTTP/1.1") and b"Upgrade: tcp" in got[0]
    assert got[1] == b"go\n{}"


def test_docker_errors_are_mapped_by_operation(tmp_path: Path, home: Path) -> None:
    """A daemon that refuses during status, cancel or release is bad input (exit 2), one that
    does not answer is unreachable (exit 4); only a start that failed is exit 3."""
    from runctl.backends.base import Handle, JobState
    from runctl.backends.docker import DockerBackend, docker_errors
    from runctl.errors import BackendUnreachable, ExitCode, InputError, StartError
    from runctl.status import RunStatus

    refusal = (b'HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n'
               b'{"message": "refused"}')
    sock = tmp_path / "d.sock"
    CannedDaemon(sock, [refusal] * 6)
    backend = DockerBackend("d", {"image": "x", "base_url": f"unix://{sock}"}, services(home, "docker"))
    handle = Handle("docker", "abc", str(tmp_path / "run"))
    for call in (lambda: backend.status_many([handle]), lambda: backend.release(handle, JobState(RunStatus.COMPLETED))):
        with pytest.raises(InputError) as e:
            call()
        assert e.value.exit_code == ExitCode.BAD_INPUT and "refused" in str(e.value)
    with pytest.raises(StartError), docker_errors("starting", StartError):
        raise EngineError(500, "no such image")
    gone = DockerBackend("d", {"image": "x", "base_url": f"unix://{tmp_path / 'none.sock'}"}, services(home, "docker"))
    with pytest.raises(BackendUnreachable) as e:
        gone.status_many([handle])
    assert e.value.exit_code == ExitCode.BACKEND_UNREACHABLE
    backend.close()
    gone.close()
