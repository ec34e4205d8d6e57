"""The portal: a Starlette app serving the page (static/, with uPlot vendored), the JSON
API under /api/ that the page itself uses, and server-sent events that tell a page when a
run it shows changed. A background thread syncs the unfinished runs someone watches,
batched per backend (``runs.refresh_many``), so a chart grows while its job runs.

Threads: Starlette runs the API's plain functions in a thread pool; each thread has its
own Store (its own SQLite connection), never one shared unguarded.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, MutableMapping

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from runctl.errors import InputError, RunctlError
from runctl.ops.session import Session
from runctl.store.sqlite import Store
from runctl.web import data

STATIC = Path(__file__).parent / "static"
WATCH_POLL_S = 0.25  # how often a page's watcher compares its runs (the store is local: cheap)
SYNC_POLL_S = 0.5  # how often watched unfinished runs are synced from their backends
HEARTBEAT_S = 15.0


class Portal:
    """State shared by the app's threads: where the store is, the token, the watched runs."""

    def __init__(self, session_factory: Callable[[], Session], token: str | None) -> None:
        self.session_factory = session_factory
        self.token = token
        self.local = threading.local()
        self.watched: dict[str, int] = {}  # run id -> number of pages watching it
        self.lock = threading.Lock()
        self.stop = threading.Event()

    @property
    def session(self) -> Session:
        s = getattr(self.local, "session", None)
        if s is None:
            s = self.local.session = self.session_factory()
        return s

    @property
    def store(self) -> Store:
        return self.session.store

    def watch(self, run_ids: list[str], delta: int) -> None:
        with self.lock:
            for rid in run_ids:
                self.watched[rid] = self.watched.get(rid, 0) + delta
                if self.watched[rid] <= 0:
                    del self.watched[rid]

    def sync_loop(self) -> None:
        """Sync the unfinished runs being watched, one batched status call per backend."""
        from runctl.ops.runs import refresh_many

        session = self.session_factory()
        try:
            while not self.stop.wait(SYNC_POLL_S):
                with self.lock:
                    ids = list(self.watched)
                if not ids:
                    continue
                records = []
                for rid in ids:
                    try:
                        r = session.store.get(rid)
                    except RunctlError:
                        continue
                    if not r.synced:
                        records.append(r)
                        records.extend(c for c in session.store.runs(parent_id=r.id) if not c.synced)
                if records:  # a backend that does not answer leaves its runs as they were; next pass retries
                    refresh_many(session, records, lambda target, e: None)
        finally:
            session.close()


def create_app(session_factory: Callable[[], Session], token: str | None = None,
               hosts: set[str] | None = None) -> Starlette:
    """The portal. ``hosts``: the only names a request's Host header may carry (the bound
    address; a DNS-rebinding page's own name is refused); None accepts any (tests)."""
    portal = Portal(session_factory, token)

    def api(fn: Callable[..., Any]) -> Callable[[Request], Any]:
        """A JSON endpoint whose body runs in the thread pool; runctl's input errors are 4xx."""
        async def endpoint(request: Request) -> Response:
            try:
                result = await run_in_threadpool(fn, request)
            except RunctlError as e:
                status = 404 if "no run" in str(e) or "no such" in str(e) or "has no metric" in str(e) else 400
                return JSONResponse({"error": str(e)}, status_code=status)
            if isinstance(result, Response):
                return result
            return JSONResponse(data.finite(result))
        return endpoint

    def q_int(request: Request, key: str, default: int, lo: int, hi: int) -> int:
        """An integer query parameter, clamped to [lo, hi]; anything else is a 400."""
        text = request.query_params.get(key)
        if text in (None, ""):
            return default
        try:
            return max(lo, min(int(text), hi))  # type: ignore[arg-type]
        except ValueError:
            raise InputError(f"{key}={text[:40]!r}: a whole number") from None  # type: ignore[index]

    def q_list(request: Request, key: str) -> list[str]:
        return [v for v in request.query_params.get(key, "").split(",") if v]

    def experiments(request: Request) -> Any:
        return data.experiments(portal.store)

    def runs(request: Request) -> Any:
        p = request.query_params
        return data.runs(portal.store, p.get("experiment") or None, p.get("status") or None, p.get("tag") or None,
                         p.get("sort", "-created"), q_list(request, "metrics"), q_int(request, "limit", 500, 1, 10_000))

    def run(request: Request) -> Any:
        from runctl.ops.portal import portal_url

        r = portal.store.resolve(request.path_params["run_id"])
        return {**data.run_detail(portal.store, r), "portal_url": portal_url(r.id, portal.store.dir)}

    def compare(request: Request) -> Any:
        return data.compare(portal.session, q_list(request, "runs"))

    def diff(request: Request) -> Any:
        from runctl.ops.diff import diff_runs

        a, b = (portal.store.resolve(request.query_params.get(k) or "-") for k in ("a", "b"))
        return diff_runs(portal.session, a, b)

    def metric(request: Request) -> Any:
        r = portal.store.resolve(request.path_params["run_id"])
        width = q_int(request, "points", data.MAX_POINTS_DEFAULT, 10, 20000)
        x_axis = request.query_params.get("x", "step")
        if x_axis not in ("step", "time"):
            raise InputError(f"x={x_axis!r}: step (or the index) or time")
        return data.metric(portal.store, r.id, request.path_params["name"], max(10, min(width, 20000)), x_axis)

    def logs(request: Request) -> Any:
        r = portal.store.resolve(request.path_params["run_id"])
        off = request.query_params.get("offset")
        return data.log_tail(portal.store, r.id, request.query_params.get("name", "logs/std_log.txt"),
                             q_int(request, "offset", 0, 0, 1 << 62) if off not in (None, "") else None)

    def download(request: Request) -> Any:
        r = portal.store.resolve(request.path_params["run_id"])
        path = data.store_file(portal.store, r.id, request.path_params["path"])
        inline = request.query_params.get("inline") == "1"
        # A job wrote this file: shown inline (images), it runs in a sandbox with no origin, so
        # HTML or SVG a job made cannot script the portal (read /api/runs and its logs).
        return FileResponse(path, filename=path.name,  # streamed in chunks
                            content_disposition_type="inline" if inline else "attachment",
                            headers={"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"})

    async def events(request: Request) -> Response:
        """Server-sent events: ``change`` with {run: marks} whenever a watched run's status,
        newest metric or log size moved (checked every 0.25 s, so within 1 s of the store)."""
        ids = [i for i in request.query_params.get("runs", "").split(",") if i][:50]

        async def stream() -> Any:
            portal.watch(ids, +1)
            last: dict[str, Any] = {}
            beat = time.monotonic()
            try:
                while not portal.stop.is_set():
                    if await request.is_disconnected():
                        break
                    marks = await run_in_threadpool(data.change_marks, portal.store, ids)
                    changed = {k: v for k, v in marks.items() if last.get(k) != v}
                    if changed:
                        last.update(changed)
                        yield f"event: change\ndata: {json.dumps(changed)}\n\n"
                        beat = time.monotonic()
                    elif time.monotonic() - beat > HEARTBEAT_S:
                        yield ": keep-alive\n\n"
                        beat = time.monotonic()
                    await asyncio.sleep(WATCH_POLL_S)
            finally:
                portal.watch(ids, -1)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    routes = [
        Route("/api/experiments", api(experiments)),
        Route("/api/runs", api(runs)),
        Route("/api/compare", api(compare)),
        Route("/api/diff", api(diff)),
        Route("/api/runs/{run_id}", api(run)),
        Route("/api/runs/{run_id}/metrics/{name:path}", api(metric)),
        Route("/api/runs/{run_id}/logs", api(logs)),
        Route("/api/runs/{run_id}/files/{path:path}", api(download)),
        Route("/api/events", events),
        Mount("/static", StaticFiles(directory=STATIC)),
        Route("/", page), Route("/experiments/{name}", page), Route("/runs/{run_id}", page), Route("/compare", page),
    ]
    app = Starlette(routes=routes, lifespan=_lifespan(portal))
    app.state.portal = portal
    guarded = _guarded(app, token) if token else app
    return _host_checked(guarded, hosts) if hosts is not None else guarded  # type: ignore[no-any-return]


def host_name(header: str) -> str:
    """The name in a Host header, without its port ("[::1]:80" -> "::1")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _host_checked(app: Any, hosts: set[str]) -> Any:
    """Refuse a request whose Host header names another host (DNS rebinding: a page of
    evil.example whose name now resolves to 127.0.0.1 would otherwise read the portal)."""

    async def checked(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            given = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if host_name(given) not in hosts:
                await JSONResponse({"error": f"this portal answers to {', '.join(sorted(hosts))} only, not to "
                                             f"{given[:100]!r}"}, status_code=421)(scope, receive, send)
                return
        await app(scope, receive, send)

    checked.state = app.state  # type: ignore[attr-defined]
    return checked


def _lifespan(portal: Portal) -> Any:
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        thread = threading.Thread(target=portal.sync_loop, name="runctl-ui-sync", daemon=True)
        thread.start()
        try:
            yield
        finally:
            portal.stop.set()
            thread.join(timeout=5)

    return lifespan


TOKEN_COOKIE = "runctl_token"


def _guarded(app: Starlette, token: str) -> Any:
    """Every request must carry the token (``?token=`` once; a cookie afterwards)."""

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            await JSONResponse({"error": "this portal needs its token: open the address `runctl ui` printed"},
                               status_code=401)(scope, receive, send)
            return
        if request.query_params.get("token"):
            async def send_with_cookie(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message.setdefault("headers", []).append(
                        (b"set-cookie", f"{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode()))
                await send(message)

            await app(scope, receive, send_with_cookie)
            return
        await app(scope, receive, send)

    guarded.state = app.state  # type: ignore[attr-defined]
    return guarded
