"""`runctl ui`: serve the portal with uvicorn until Ctrl-C, on 127.0.0.1 unless told
otherwise (then only with a token, printed in the address). While it serves, the store's
``ui.json`` says where, so ``run.get_portal_url()`` and ``runctl show`` print the address
a running portal actually answers at."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Callable, Iterator

from runctl.errors import InputError
from runctl.ops.portal import UI_FILE
from runctl.ops.session import Session
from runctl.store import private

DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, wanted: int) -> socket.socket:
    """A socket listening on ``host``: at port ``wanted`` if it is free, else one the system
    picks. Made before the address is printed, so nobody who has it is ever refused."""
    for port in (wanted, 0):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            s.close()
            if port == 0:
                raise InputError(f"--host {host}: cannot listen there ({e})") from None
            continue
        s.listen(128)
        return s
    raise AssertionError("unreachable")


@contextlib.contextmanager
def advertised(store_dir: Path, url: str) -> Iterator[None]:
    """ui.json names this server while it runs (with our pid, so a stale file is ignored)."""
    from runctl.job.launcher import this_process

    path = store_dir / UI_FILE
    tmp = path.with_name(f".{UI_FILE}.{os.getpid()}")
    private.write_bytes(tmp, json.dumps({"url": url, "owner": this_process()}).encode())
    os.replace(tmp, path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if json.loads(path.read_text()).get("owner", {}).get("pid") == os.getpid():
                path.unlink()


def serve(session_factory: Callable[[], Session], store_dir: Path, host: str, port: int, token: str | None,
          open_browser: bool, announce: Callable[[str], None]) -> None:
    import uvicorn

    from runctl.web.app import create_app

    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(18)
    sock = listening_socket(host, port)
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{sock.getsockname()[1]}/"
    url = base + (f"?token={token}" if token else "")
    hosts = {host.lower()} | ({"localhost", "127.0.0.1", "::1"} if is_loopback(host) else set())
    if host in ("0.0.0.0", "::"):  # every address of this machine: its token guards it, not a name
        hosts = None  # type: ignore[assignment]
    app = create_app(session_factory, token, hosts)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    with sock, advertised(store_dir, base.rstrip("/")):
        announce(url)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        server.run(sockets=[sock])
