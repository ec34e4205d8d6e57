"""The team store: the run history in PostgreSQL, shared by a team (issue 21), with its files
(snapshots' objects, runs' logs and outputs) under a shared artifacts folder.

``PgStore`` is the SQLite ``Store`` on another connection: the same methods and the same
SQL, which ``_PgDb`` hands to psycopg with PostgreSQL's placeholders and upserts. What
differs is written here: the schema (``schema.sql``-like DDL below, made by `runctl store
init`), row locks where SQLite's one-writer-at-a-time made them unnecessary (a run's
stored offset is read FOR UPDATE; numbering takes an advisory lock), errors mapped to
runctl's (unreachable: exit 4; refused by the database's policies: exit 2), and what stays
on this machine (its small state, the work folders of its local targets, the source
trees' stat cache: paths mean nothing on a colleague's machine).

Credentials come from libpq alone (PGPASSFILE / ~/.pgpass, the service file, PG*
variables): a password written in the URL is refused before anything connects
(runctl/config/workspace.py).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from runctl.errors import InputError, Refused, StoreUnreachable
from runctl.store import layout, private
from runctl.store.artifacts import FETCHED, fetch_run, upload_run
from runctl.store.sqlite import SCHEMA_VERSION, Store

if TYPE_CHECKING:
    from runctl.store.artifacts import Bucket
    from runctl.store.snapshot import ObjectStore

PG_SCHEMA_VERSION = SCHEMA_VERSION  # the SQLite store's: one schema (runctl/store/pgschema.py)
CONNECT_TIMEOUT_S = 10

_UPSERTS = {"tags": "(run_id, key) DO UPDATE SET value = EXCLUDED.value"}


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite's SQL as PostgreSQL takes it: ``?`` -> ``%s``; INSERT OR IGNORE / OR REPLACE ->
    ON CONFLICT. (runctl's SQL holds no ``?`` or ``%`` inside literals.)"""
    out = sql.replace("%", "%%").replace("?", "%s")
    m = re.match(r"\s*INSERT OR (IGNORE|REPLACE) INTO (\w+)", out)
    if m:
        conflict = "DO NOTHING" if m.group(1) == "IGNORE" else _UPSERTS[m.group(2)]
        out = "INSERT INTO " + m.group(2) + out[m.end():] + " ON CONFLICT " + conflict
    return out


class _Row:
    """A row that reads like sqlite3.Row: by position, by name, and as a mapping."""

    __slots__ = ("_values", "_names")

    def __init__(self, values: tuple, names: dict[str, int]) -> None:
        self._values, self._names = values, names

    def __getitem__(self, key: int | str) -> Any:
        return self._values[key if isinstance(key, int) else self._names[key]]

    def keys(self) -> list[str]:
        return list(self._names)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _rows(cursor: Any) -> Any:
    names = {c.name: i for i, c in enumerate(cursor.description or [])}
    return lambda values: _Row(values, names)


class _PgCursor:
    """``db.cursor()`` with sqlite3's ``row_factory = None`` meaning plain tuples."""

    def __init__(self, db: _PgDb) -> None:
        self._db = db
        self.row_factory: Any = _rows

    def execute(self, sql: str, args: Any = ()) -> Any:
        return self._db.execute(sql, args, plain=self.row_factory is None)


class _PgDb:
    """The psycopg connection behind the sqlite3-shaped calls ``Store`` makes. A connection
    the server dropped (a restart, a failover) is made again at the next statement outside a
    transaction, so a long-lived process (`runctl wait`, the portal, a tuning controller)
    catches up once the database is back."""

    def __init__(self, conn: Any, url: str) -> None:
        self.conn, self.url = conn, url
        self.in_tx = False

    def _usable(self) -> None:
        if not self.conn.closed and not self.conn.broken:
            return
        if self.in_tx:
            raise StoreUnreachable(f"the team store {redacted(self.url)} dropped the connection mid-transaction; "
                                   f"nothing of it was stored, try again")
        self.conn = connect(self.url)

    def execute(self, sql: str, args: Any = (), plain: bool = False) -> Any:
        from psycopg.rows import tuple_row

        if sql == "BEGIN":
            self._usable()
            self.in_tx = True
        elif sql in ("COMMIT", "ROLLBACK"):
            self.in_tx = False
        else:
            self._usable()
        cur = self.conn.cursor(row_factory=tuple_row if plain else _rows)
        with _mapped_errors(self.url):
            cur.execute(translate(sql), tuple(args))
        return cur

    def executemany(self, sql: str, rows: Any) -> None:
        self._usable()
        with _mapped_errors(self.url), self.conn.cursor() as cur:
            cur.executemany(translate(sql), list(rows))

    def cursor(self) -> _PgCursor:
        return _PgCursor(self)

    def close(self) -> None:
        self.conn.close()


class _mapped_errors:  # noqa: N801 - a context manager used like a function
    """psycopg's errors as runctl's: the database gone -> StoreUnreachable (exit 4); a change
    its policies refuse -> Refused (exit 2), naming what to do."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is None:
            return
        import psycopg

        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            detail = str(exc).strip().splitlines()[0]
            raise Refused(f"the team store refused the change: {detail}; only the run's submitter (or a member of "
                          f"runctl_admin) may change it") from exc
        if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled):
            raise StoreUnreachable(f"the team store {redacted(self.url)} did not answer: "
                                   f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}; "
                                   f"nothing was changed, try again when it is back") from exc


class _PgTx:
    def __init__(self, db: _PgDb) -> None:
        self.db = db

    def __enter__(self) -> _PgDb:
        self.db.execute("BEGIN")
        return self.db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.db.conn.broken or self.db.conn.closed:
            self.db.in_tx = False  # the server already ended it
            if exc_type is None:
                raise StoreUnreachable(f"the team store {redacted(self.db.url)} dropped the connection before the "
                                       f"commit; nothing of it was stored, try again")
            return
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def connect(url: str) -> Any:
    """An autocommit connection to the team store, or runctl's error saying why not."""
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="runctl")
    except psycopg.OperationalError as e:
        raise connect_error(url, e) from None


def connect_error(url: str, e: Exception) -> Exception:
    """Why connecting failed: the server said no (a wrong database, role or password: exit 2),
    or nothing answered (exit 4)."""
    text = str(e).strip()
    fatal = [line.split("FATAL:", 1)[1].strip() for line in text.splitlines() if "FATAL:" in line]
    if fatal:
        return InputError(f"the team store {redacted(url)} refused the connection: {fatal[-1]}; check the URL's "
                          f"database and role, and the role's password in ~/.pgpass (or PGPASSFILE)")
    return StoreUnreachable(f"the team store {redacted(url)} did not answer: "
                            f"{text.splitlines()[-1] if text else type(e).__name__}; try again when it is back")


def redacted(url: str) -> str:
    """The URL as shown in messages (no password: there is none, runctl refuses one)."""
    return url.split("?", 1)[0]


class PgStore(Store):
    FOR_UPDATE = " FOR UPDATE"

    def __init__(self, url: str, artifacts: Path | str, local_dir: Path) -> None:
        import psycopg

        self.dir = Path(local_dir)
        self.bucket: Bucket | None = None
        if str(artifacts).startswith("s3://"):  # the bucket, through this machine's cache of it
            from runctl.store.artifacts import Bucket

            self.bucket = Bucket(str(artifacts))
            artifacts = self.dir / "artifacts-cache"
        self.artifacts = Path(artifacts)
        self.url = url
        self._objects: ObjectStore | None = None
        self._local: Store | None = None
        self.full: str | None = None
        private.makedirs(self.dir)
        try:
            private.makedirs(self.artifacts)
        except OSError as e:
            raise InputError(f"artifacts {self.artifacts}: cannot use it ({e.strerror}); give a shared folder this "
                             f"user may write (the same path on every teammate's machine)") from None
        self.DB_ERRORS = (psycopg.DataError, psycopg.ProgrammingError)
        self.db = _PgDb(connect(url), url)  # type: ignore[assignment]
        self.schema_version = check_schema(self.db, url)  # type: ignore[arg-type]

    def me(self) -> str | None:
        return str(self.db.execute("SELECT current_user").fetchone()[0])

    def tx(self) -> Any:
        return _PgTx(self.db)  # type: ignore[arg-type]

    def _serialize(self, db: Any, key: str) -> None:
        db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (key,))

    def close(self) -> None:
        self.db.close()
        if self._local is not None:
            self._local.close()

    # -- files: under the shared artifacts folder -------------------------------------
    def run_dir(self, run_id: str) -> Path:
        path = layout.runs_dir(self.artifacts) / run_id
        if self.bucket is not None and not (path / FETCHED).exists():
            row = self.db.execute("SELECT synced FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None and row[0]:  # synced (by a teammate's machine): its files are in the bucket
                fetch_run(self.bucket, run_id, path)
        return path

    def update(self, run_id: str, **values: Any) -> None:
        if self.bucket is not None and values.get("synced"):  # the files first: a failed upload leaves it unsynced
            for rid in (run_id, *sorted(self.descendants(run_id))):
                upload_run(self.bucket, rid, layout.runs_dir(self.artifacts) / rid)
        super().update(run_id, **values)

    @property
    def objects(self) -> ObjectStore:
        if self._objects is None:
            from runctl.store.snapshot import ObjectStore

            if self.bucket is not None:
                from runctl.store.artifacts import MirroredObjects

                self._objects = MirroredObjects(self.artifacts, self.bucket)
            else:
                self._objects = ObjectStore(self.artifacts)
        return self._objects

    def partial_files(self) -> list[Path]:
        runs = layout.runs_dir(self.artifacts)
        return sorted(runs.rglob(".*.part")) if runs.is_dir() else []

    # -- what stays on this machine ---------------------------------------------------------
    @property
    def local(self) -> Store:
        """This machine's own store (its stat cache; `runctl store push` copies from it)."""
        if self._local is None:
            self._local = Store(self.dir)
        return self._local

    def stat_cache_get(self, paths: list[str]) -> dict[str, tuple]:
        return self.local.stat_cache_get(paths)

    def stat_cache_put(self, rows: Any) -> None:
        self.local.stat_cache_put(rows)


def check_schema(db: _PgDb, url: str) -> int:
    """The database's runctl schema version; an error when there is none, or one newer than
    this runctl writes (never write into a schema it does not know)."""
    import psycopg

    try:
        row = db.execute("SELECT value FROM runctl_meta WHERE key = 'schema_version'").fetchone()
    except psycopg.errors.UndefinedTable:
        raise InputError(f"the team store {redacted(url)} has no runctl schema yet: its administrator runs "
                         f"`runctl store init` once (see the README, \"A team workspace\")") from None
    version = int(row[0]) if row is not None else 0
    if version > PG_SCHEMA_VERSION:
        made_by = db.execute("SELECT value FROM runctl_meta WHERE key = 'runctl_version'").fetchone()
        want = f"runctl {made_by[0]} or newer" if made_by else "the runctl your team uses"
        raise InputError(f"the team store {redacted(url)} has schema version {version}, newer than this runctl's "
                         f"({PG_SCHEMA_VERSION}): install {want} (pip install -U runctl) before using it; nothing "
                         f"was written")
    if version < PG_SCHEMA_VERSION:
        raise InputError(f"the team store {redacted(url)} has schema version {version}; this runctl needs "
                         f"{PG_SCHEMA_VERSION}: its administrator runs `runctl store init` to upgrade it")
    return version
