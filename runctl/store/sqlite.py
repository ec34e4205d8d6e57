"""The run store: one SQLite database (WAL) under the store directory, safe across processes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sqlite3
import struct
import sys
import time
from array import array
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, cast

from runctl.errors import InputError
from runctl.job import events as events_format
from runctl.status import RunStatus
from runctl.store import layout

if TYPE_CHECKING:
    from runctl.backends.base import Services
    from runctl.store.snapshot import ObjectStore

# The schema, ONE path for both databases (this SQLite store and the team store's
# PostgreSQL, runctl/store/pgschema.py): BASE_DDL makes version BASE_VERSION in either
# dialect, and UPGRADES[v] takes either from v - 1 to v. (Versions before 5 existed only
# in SQLite stores: _init_schema's legacy steps bring those to 5.)
BASE_VERSION = 5  # 3: metrics.packed (a batch of one metric's scalars in one row); 4: models; 5: who submitted
UPGRADES: dict[int, list[str]] = {}  # version -> its statements, portable SQL (none since 5)
SCHEMA_VERSION = BASE_VERSION + len(UPGRADES)
WHO_COLUMNS = ("submitted_by", "os_user", "submit_host")  # the database role (a team store's), the OS user and host
DB_NAME = "runctl.db"

_TYPES = {
    "sqlite": {"key": "INTEGER PRIMARY KEY", "big": "INTEGER", "real": "REAL", "blob": "BLOB", "owner": "TEXT"},
    "postgres": {"key": "bigserial PRIMARY KEY", "big": "bigint", "real": "double precision", "blob": "bytea",
                 "owner": "text NOT NULL DEFAULT current_user"},
}

BASE_DDL = """
CREATE TABLE IF NOT EXISTS experiments (
    id {key}, name TEXT NOT NULL UNIQUE, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    rk {key},  -- a stable small key for metrics (a plain rowid may change on VACUUM)
    id TEXT NOT NULL UNIQUE,
    experiment_id {big} NOT NULL REFERENCES experiments(id),
    number INTEGER NOT NULL,
    display_name TEXT, description TEXT,
    kind TEXT NOT NULL DEFAULT 'submitted',
    status TEXT NOT NULL,
    compute_target TEXT, backend TEXT, handle TEXT,
    snapshot_id TEXT, spec TEXT,
    exit_code INTEGER, error TEXT,
    created_at {real} NOT NULL, started_at {real}, ended_at {real},
    host TEXT, parent_id TEXT, unique_key TEXT,
    events_offset {big} NOT NULL DEFAULT 0,
    synced INTEGER NOT NULL DEFAULT 0,
    submitted_by {owner}, os_user TEXT, submit_host TEXT,
    UNIQUE (experiment_id, number));
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at);
CREATE INDEX IF NOT EXISTS runs_unique_key ON runs(unique_key) WHERE unique_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS metrics (
    seq {key},
    run {big} NOT NULL,  -- runs.rk: metrics are the store's biggest table
    kind TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
    step {big}, ts {real}, description TEXT,
    packed {blob});  -- kind 'scalars': the values, times and steps of a batch (value = their count)
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run, seq);
CREATE TABLE IF NOT EXISTS tags (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS properties (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT NOT NULL, path TEXT,
    tags TEXT, properties TEXT, framework TEXT, framework_version TEXT, description TEXT,
    created_at {real} NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS stat_cache (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ino INTEGER, digest TEXT);
"""


def schema_statements(dialect: str, version: int | None) -> list[str]:
    """What takes a database of ``dialect`` from ``version`` (None: empty) to SCHEMA_VERSION:
    BASE_DDL, then the upgrades after it."""
    out = [stmt for stmt in BASE_DDL.format(**_TYPES[dialect]).split(";") if stmt.strip()] if version is None else []
    for v in range(max(version or BASE_VERSION, BASE_VERSION) + 1, SCHEMA_VERSION + 1):
        out += UPGRADES[v]
    return out


@dataclass
class RunRecord:
    id: str
    experiment: str
    number: int
    display_name: str | None
    description: str | None
    kind: str
    status: RunStatus
    compute_target: str | None
    backend: str | None
    handle: dict | None
    snapshot_id: str | None
    spec: dict | None
    exit_code: int | None
    error: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    host: str | None
    parent_id: str | None
    unique_key: str | None
    events_offset: int
    synced: bool
    submitted_by: str | None = None
    os_user: str | None = None
    submit_host: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> RunRecord:
        d = dict(zip(row.keys(), row))  # (C-level for sqlite3.Row and the team store's rows alike)
        d["status"] = RunStatus(d["status"])
        d["handle"] = json.loads(d["handle"]) if d["handle"] else None
        d["spec"] = json.loads(d["spec"]) if d["spec"] else None
        d["synced"] = bool(d["synced"])
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def summary(self) -> dict[str, Any]:
        """The fields shown by ``list``/``status`` (JSON-friendly)."""
        return {
            "id": self.id, "experiment": self.experiment, "number": self.number,
            "display_name": self.display_name, "status": self.status.value,
            "compute_target": self.compute_target, "exit_code": self.exit_code, "error": self.error,
            "created_at": _iso(self.created_at), "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at), "host": self.host, "user": self.user,
        }

    @property
    def user(self) -> str | None:
        """Who submitted it: the database role on a team store, else the OS user."""
        return self.submitted_by or self.os_user


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


_RUN_EVENT_KINDS = frozenset({"tag", "property", "display_name", "status", "run", "model"})
_TERMINAL_VALUES = tuple(s.value for s in RunStatus if s.is_terminal)
_RUN_SELECT = "SELECT runs.*, experiments.name AS experiment FROM runs JOIN experiments ON experiments.id = runs.experiment_id"
_UPDATABLE = {
    "display_name", "description", "status", "backend", "handle", "snapshot_id", "spec", "exit_code", "error",
    "started_at", "ended_at", "host", "synced", "compute_target",
}


class Store:
    def __init__(self, store_dir: Path) -> None:
        from runctl.store import private

        self.dir = Path(store_dir)
        self._objects: ObjectStore | None = None
        self.full: str | None = None  # why the store is open read-only (a full disk), else None
        private.makedirs(self.dir)
        try:
            self.db = self._connect()
        except sqlite3.OperationalError:
            if not _no_space(self.dir) or not (self.dir / DB_NAME).exists():
                raise
            # SQLite cannot even make its shared-memory file: read what is there, write nothing.
            self.full = f"no space left on {self.dir}"
            self.db = sqlite3.connect(f"file:{self.dir / DB_NAME}?mode=ro&immutable=1", uri=True,
                                      isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            return
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self._init_schema()
            for suffix in ("", "-wal", "-shm"):
                private.protect(self.dir / (DB_NAME + suffix))
        self.db.execute("PRAGMA synchronous = NORMAL")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.dir / DB_NAME, timeout=60, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout = 60000")
        db.execute("PRAGMA user_version").fetchone()
        return db

    def _init_schema(self) -> None:
        # Switching to WAL needs the database to itself, and SQLite does not wait for that
        # (no busy handler): two processes creating the store at once retry here.
        for _ in range(400):
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.db.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(0.025)
        with self.tx():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:  # v1 keyed metrics by the run's text id
                for table in ("runs", "metrics"):
                    self.db.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
                for index in ("runs_created", "runs_unique_key", "metrics_run"):
                    self.db.execute(f"DROP INDEX IF EXISTS {index}")
            if version == 2:
                self.db.execute("ALTER TABLE metrics ADD COLUMN packed BLOB")
            if 2 <= version < 5:
                have = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
                for column in WHO_COLUMNS:
                    if column not in have:
                        self.db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
            if version < BASE_VERSION:  # a store older than the common path: the base schema, added to it
                for stmt in schema_statements("sqlite", None):
                    self.db.execute(stmt)
            else:
                for stmt in schema_statements("sqlite", version):
                    self.db.execute(stmt)
            if version == 1:
                cols = ", ".join(r[1] for r in self.db.execute("PRAGMA table_info(runs_v1)"))
                self.db.execute(f"INSERT INTO runs ({cols}) SELECT {cols} FROM runs_v1 ORDER BY rowid")
                self.db.execute(
                    "INSERT INTO metrics (seq, run, kind, name, value, step, ts, description) SELECT m.seq, r.rk, "
                    "m.kind, m.name, m.value, m.step, m.ts, m.description FROM metrics_v1 m JOIN runs r ON r.id = m.run_id")
                self.db.execute("DROP TABLE metrics_v1")
                self.db.execute("DROP TABLE runs_v1")
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # -- transactions -----------------------------------------------------------------
    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def tx(self) -> Store._Tx:
        return Store._Tx(self.db)

    # What a database that runs transactions side by side needs (postgres.py); SQLite's
    # BEGIN IMMEDIATE already makes each write transaction the only one.
    FOR_UPDATE = ""  # appended to a SELECT whose row the transaction then changes
    DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.InterfaceError, sqlite3.ProgrammingError)

    def _serialize(self, db: Any, key: str) -> None:
        """Make transactions that number the same thing (``key``) wait for each other."""

    def _numbered(self, db: Any, experiment: str) -> tuple[int, int]:
        """(the experiment's id, made if new; the next run number in it), in transaction ``db``."""
        db.execute("INSERT OR IGNORE INTO experiments(name, created_at) VALUES (?, ?)", (experiment, time.time()))
        exp_id = db.execute("SELECT id FROM experiments WHERE name = ?", (experiment,)).fetchone()[0]
        return exp_id, self._next_number(db, exp_id)

    def _next_model_version(self, db: Any, name: str) -> int:
        self._serialize(db, f"model {name}")
        return int(db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE name = ?", (name,)).fetchone()[0])

    def _next_number(self, db: Any, exp_id: int) -> int:
        self._serialize(db, f"experiment {exp_id}")
        return int(db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE experiment_id = ?",
                              (exp_id,)).fetchone()[0])

    def run_dir(self, run_id: str) -> Path:
        """Where the store keeps a run's ingested logs and outputs."""
        return layout.runs_dir(self.dir) / run_id

    @property
    def objects(self) -> ObjectStore:
        """The object cache and the snapshots' manifests."""
        if self._objects is None:
            from runctl.store.snapshot import ObjectStore

            self._objects = ObjectStore(self.dir)
        return self._objects

    @property
    def work_root(self) -> Path:
        """Where run directories of this machine's targets go when a target names no work_dir."""
        return layout.work_root(self.dir)

    def services(self, backend_name: str) -> Services:
        """What a backend of that type is lent (runctl.backends.base.Services)."""
        return layout.services(self.dir, backend_name)

    def state_dir(self, name: str) -> Path:
        """A private folder of runctl's own state (runctl.store.layout.state_dir)."""
        return layout.state_dir(self.dir, name)

    def partial_files(self) -> list[Path]:
        """Files a killed sync left half-written in runs' stored folders (``.NAME.part``)."""
        runs = layout.runs_dir(self.dir)
        return sorted(runs.rglob(".*.part")) if runs.is_dir() else []

    # -- runs -------------------------------------------------------------------------
    def create_run(
        self, experiment: str, *, kind: str = "submitted", status: RunStatus = RunStatus.NOT_STARTED,
        unique_key: str | None = None, run_id: str | None = None, **values: Any,
    ) -> tuple[RunRecord, bool]:
        """Create a run (numbered within its experiment). With ``unique_key``, an unfinished
        run holding that key is returned instead, with ``False``."""
        now = time.time()
        with self.tx() as db:
            if unique_key is not None:
                row = db.execute(
                    _RUN_SELECT + " WHERE unique_key = ? AND status NOT IN (?, ?, ?) ORDER BY created_at DESC LIMIT 1",
                    (unique_key, *(s.value for s in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED))),
                ).fetchone()
                if row is not None:
                    return RunRecord.from_row(row), False
            exp_id, number = self._numbered(db, experiment)
            rid = run_id or f"{experiment}_{int(now)}_{secrets.token_hex(4)}"
            cols = {"id": rid, "experiment_id": exp_id, "number": number, "kind": kind, "status": status.value,
                    "created_at": now, "unique_key": unique_key, **_who()}
            cols.update({k: _encode(k, v) for k, v in values.items()})
            db.execute(
                f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", tuple(cols.values())
            )
        return self.get(rid), True

    def get(self, run_id: str) -> RunRecord:
        row = self.db.execute(_RUN_SELECT + " WHERE runs.id = ?", (run_id,)).fetchone()
        if row is None:
            raise InputError(f"no run {run_id!r}; see `runctl list`")
        return RunRecord.from_row(row)

    def resolve(self, ref: str) -> RunRecord:
        """A full id, a unique prefix of one (case-sensitive), or ``@last`` (the newest run)."""
        if len(ref) > 300 or not ref.isprintable() or not ref:
            raise InputError(f"{ref[:40]!r}{'...' if len(ref) > 40 else ''} is not a run id; see `runctl list`")
        if ref == "@last":
            row = self.db.execute(
                _RUN_SELECT + " WHERE parent_id IS NULL ORDER BY runs.created_at DESC, runs.rk DESC LIMIT 1"
            ).fetchone()
            if row is None:
                raise InputError("@last: the store has no runs yet; submit one with `runctl submit JOB.yaml`")
            return RunRecord.from_row(row)
        row = self.db.execute(_RUN_SELECT + " WHERE runs.id = ?", (ref,)).fetchone()
        if row is not None:
            return RunRecord.from_row(row)
        rows = self.db.execute(_RUN_SELECT + " WHERE substr(runs.id, 1, ?) = ? LIMIT 6", (len(ref), ref)).fetchall()
        if not rows:
            raise InputError(f"no run matches {ref!r}; see `runctl list`")
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise InputError(f"{ref!r} matches several runs ({ids}...); give more of the id")
        return RunRecord.from_row(rows[0])

    def runs(self, experiment: str | None = None, status: RunStatus | None = None, limit: int | None = None,
             parent_id: str | None = None, unfinished_only: bool = False,
             include_children: bool = False, user: str | None = None) -> list[RunRecord]:
        where, args = ["1 = 1"], []
        if user is not None:  # who submitted it: the database role where there is one, else the OS user
            where.append("COALESCE(runs.submitted_by, runs.os_user) = ?")
            args.append(user)
        if experiment is not None:
            where.append("experiments.name = ?")
            args.append(experiment)
        if status is not None:
            where.append("runs.status = ?")
            args.append(status.value)
        if parent_id is not None:
            where.append("runs.parent_id = ?")
            args.append(parent_id)
        elif not include_children:
            where.append("runs.parent_id IS NULL")
        if unfinished_only:
            where.append("runs.status NOT IN ('Completed', 'Failed', 'Canceled')")
        sql = _RUN_SELECT + " WHERE " + " AND ".join(where) + " ORDER BY runs.created_at DESC, runs.rk DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [RunRecord.from_row(r) for r in self.db.execute(sql, args)]

    def me(self) -> str | None:
        """Who this client is, as runs record it (the OS user here; the role on a team store)."""
        return _who()["os_user"]

    def update(self, run_id: str, **values: Any) -> None:
        bad = set(values) - _UPDATABLE
        if bad:
            raise ValueError(f"not updatable: {bad}")
        with self.tx() as db:
            db.execute(
                f"UPDATE runs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                (*(_encode(k, v) for k, v in values.items()), run_id),
            )

    def merge_spec(self, run_id: str, **values: Any) -> None:
        """Set keys of a run's spec in one transaction (None removes one): writers of
        different keys never undo each other."""
        with self.tx() as db:
            row = db.execute("SELECT spec FROM runs WHERE id = ?", (run_id,)).fetchone()
            spec = json.loads(row[0]) if row is not None and row[0] else {}
            for key, value in values.items():
                if value is None:
                    spec.pop(key, None)
                else:
                    spec[key] = value
            db.execute("UPDATE runs SET spec = ? WHERE id = ?", (_encode("spec", spec), run_id))

    # -- moving runs between stores (`runctl store push`) ---------------------------------
    def export_run(self, run_id: str) -> dict[str, Any]:
        """Everything the database holds of one run, as plain values (its files are in run_dir)."""
        row = self.db.execute(_RUN_SELECT + " WHERE runs.id = ?", (run_id,)).fetchone()
        run = {k: row[k] for k in row.keys() if k not in ("rk", "experiment_id", "number", "submitted_by")}
        cur = self.db.cursor()
        cur.row_factory = None
        metrics = [tuple(r) for r in cur.execute(
            "SELECT kind, name, value, step, ts, description, packed FROM metrics "
            "WHERE run = (SELECT rk FROM runs WHERE id = ?) ORDER BY seq", (run_id,))]
        models = [tuple(r) for r in cur.execute(
            "SELECT name, path, tags, properties, framework, framework_version, description, created_at FROM models "
            "WHERE run_id = ? ORDER BY name, version", (run_id,))]
        return {"run": run, "metrics": metrics, "tags": self.tags(run_id), "properties": self.properties(run_id),
                "models": models}

    def import_run(self, doc: dict[str, Any]) -> bool:
        """Add an exported run, whole, in one transaction (numbered anew in its experiment,
        its models versioned anew); False if a run with its id is here already."""
        run = dict(doc["run"])
        with self.tx() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run["id"],)).fetchone():
                return False
            experiment = run.pop("experiment")
            exp_id, number = self._numbered(db, experiment)
            cols = {**run, "experiment_id": exp_id, "number": number}
            db.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                       tuple(cols.values()))
            rk = _run_key(db, run["id"])
            if doc["metrics"]:
                db.executemany("INSERT INTO metrics (run, kind, name, value, step, ts, description, packed) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(rk, *m) for m in doc["metrics"]])
            for table, values in (("tags", doc["tags"]), ("properties", doc["properties"])):
                if values:
                    db.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?, ?, ?)",
                                   [(run["id"], k, v) for k, v in values.items()])
            for name, *rest in doc["models"]:
                version = self._next_model_version(db, name)
                db.execute("INSERT INTO models (name, version, run_id, path, tags, properties, framework, "
                           "framework_version, description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (name, version, run["id"], *rest))
        return True

    # -- events ------------------------------------------------------------------------
    def events_offset(self, run_id: str) -> int:
        return int(self.db.execute("SELECT events_offset FROM runs WHERE id = ?", (run_id,)).fetchone()[0])

    def ingest_events(self, run_id: str, expected_offset: int, new_offset: int, events: list[dict]) -> bool:
        """Store events read from ``expected_offset`` up to ``new_offset`` of events.jsonl, once.

        Returns False (and stores nothing) if another process got there first."""
        try:
            return self._ingest(run_id, expected_offset, new_offset, events)
        except (TypeError, ValueError, KeyError, AttributeError, *self.DB_ERRORS):  # type: ignore[misc]
            # A forged or damaged event that parsed as JSON: keep the well-formed ones, count the rest.
            good = [ev for ev in events if valid_event(ev)]
            warning = sync_warning(expected_offset, f"{len(events) - len(good)} malformed event(s) skipped")
            return self._ingest(run_id, expected_offset, new_offset, [*good, warning])

    def _ingest(self, run_id: str, expected_offset: int, new_offset: int, events: list[dict]) -> bool:
        with self.tx() as db:
            cur = db.execute("SELECT events_offset FROM runs WHERE id = ?" + self.FOR_UPDATE, (run_id,)).fetchone()[0]
            if cur != expected_offset:
                return False
            self._apply_events(db, run_id, events)
            db.execute("UPDATE runs SET events_offset = ? WHERE id = ?", (new_offset, run_id))
        return True

    def add_events(self, run_id: str, events: list[dict]) -> None:
        """Store events logged in this process (interactive runs): no file, no offset."""
        with self.tx() as db:
            self._apply_events(db, run_id, events)

    def _apply_events(self, db: sqlite3.Connection, top_id: str, events: list[dict]) -> None:
        metric_rows: list[tuple[Any, ...]] = []
        keys = {top_id: _run_key(db, top_id)}
        ids: dict[Any, str] = {None: top_id, top_id: top_id}
        for ev in events:
            kind, name, value = ev["k"], ev["n"], ev["v"]
            if type(kind) is not str or type(name) is not str:
                raise TypeError("event kind and name must be strings")  # ingest_events re-checks each event
            raw = ev.get("r")
            rid = ids.get(raw) or ids.setdefault(raw, self._child_of(db, top_id, raw))
            if rid not in keys:
                self._ensure_child(db, top_id, rid, ev, ids)
                keys[rid] = _run_key(db, rid)
            if kind == "scalars":  # a batch of one metric's values: one row, packed (no per-value work)
                packed = pack_scalars(ev)
                if packed is None:
                    raise TypeError("malformed scalars event")  # ingest_events re-checks each event
                metric_rows.append((keys[rid], kind, name, str(events_format.batch_count(ev)), None, _num(ev.get("t0")), ev.get("d"),
                                    packed))
            elif kind == "scalar" or kind not in _RUN_EVENT_KINDS:
                # (a step, time or description of an odd type is stored as it is; one SQLite cannot
                # store, a list or an object, fails the batch, and ingest_events re-checks each event)
                metric_rows.append((keys[rid], kind, name, _json_value(value), ev.get("s"), ev.get("t"), ev.get("d"),
                                    None))
            elif kind == "tag":
                if value is None:
                    db.execute("DELETE FROM tags WHERE run_id = ? AND key = ?", (rid, name))
                else:
                    db.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", (rid, name, str(value)))
            elif kind == "property":
                db.execute("INSERT OR IGNORE INTO properties VALUES (?, ?, ?)", (rid, name, str(value)))
            elif kind == "model":  # run.register_model: numbered per name
                v = value if isinstance(value, dict) else {}
                version = self._next_model_version(db, name)
                db.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (name, version, rid, _text(v.get("path")), json.dumps(v.get("tags") or {}),
                            json.dumps(v.get("properties") or {}), _text(v.get("framework")),
                            _text(v.get("framework_version")), _text(v.get("description")), _num(ev.get("t")) or time.time()))
            elif kind == "display_name":
                db.execute("UPDATE runs SET display_name = ? WHERE id = ?", (str(value), rid))
            elif kind == "status" and rid != top_id and value in _TERMINAL_VALUES:  # children end themselves
                db.execute(
                    "UPDATE runs SET status = ?, error = ?, ended_at = ? WHERE id = ? AND status NOT IN (?, ?, ?)",
                    (value, _text(ev.get("error")), _num(ev.get("t")), rid, *_TERMINAL_VALUES),
                )
        if metric_rows:  # one executemany: ingesting a million values is a few seconds, not tens
            db.executemany(
                "INSERT INTO metrics (run, kind, name, value, step, ts, description, packed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                metric_rows,
            )

    def _child_of(self, db: sqlite3.Connection, top_id: str, raw: Any) -> str:
        """The store id for child ``raw`` named in ``top_id``'s events: always a descendant of
        ``top_id`` (context/_ids.py), whatever the job wrote; an id that is not a valid name, or
        that belongs to a run outside this tree, is replaced by a stable hashed one."""
        from runctl.job.context import _ids

        cid = _ids.scoped(top_id, str(raw))
        if _ids.problem(top_id, cid) is None and self._outside_tree(db, top_id, cid) is False:
            return cid
        return f"{top_id}_x{hashlib.sha256(str(raw).encode('utf-8', 'replace')).hexdigest()[:16]}"

    @staticmethod
    def _outside_tree(db: sqlite3.Connection, top_id: str, run_id: str) -> bool:
        """Does ``run_id`` exist as a run that is not ``top_id`` or one of its descendants?"""
        seen = 0
        current: str | None = run_id
        while current is not None and seen < 64:
            if current == top_id:
                return False
            row = db.execute("SELECT parent_id FROM runs WHERE id = ?", (current,)).fetchone()
            if row is None:
                return current != run_id  # an unknown id is a new child; a broken chain is outside
            current = row[0]
            seen += 1
        return True

    def descendants(self, run_id: str) -> set[str]:
        out: set[str] = set()
        todo = [run_id]
        while todo:
            kids = [r[0] for r in self.db.execute("SELECT id FROM runs WHERE parent_id = ?", (todo.pop(),))]
            out.update(kids)
            todo.extend(kids)
        return out

    def _ensure_child(self, db: sqlite3.Connection, top_id: str, child_id: str, ev: dict, ids: dict) -> None:
        if db.execute("SELECT 1 FROM runs WHERE id = ?", (child_id,)).fetchone():
            return
        info = ev["v"] if ev["k"] == "run" and isinstance(ev["v"], dict) else {}
        parent_id = top_id
        if info.get("parent") not in (None, top_id):
            wanted = ids.get(info["parent"]) or self._child_of(db, top_id, info["parent"])
            if wanted != child_id and db.execute("SELECT 1 FROM runs WHERE id = ?", (wanted,)).fetchone():
                parent_id = wanted
        parent = db.execute("SELECT experiment_id, compute_target, submitted_by, os_user, submit_host FROM runs "
                            "WHERE id = ?", (parent_id,)).fetchone()
        number = self._next_number(db, parent["experiment_id"])
        display = info.get("display_name")
        db.execute(
            "INSERT INTO runs (id, experiment_id, number, kind, status, created_at, started_at, parent_id, display_name,"
            " compute_target, submitted_by, os_user, submit_host) VALUES (?, ?, ?, 'child', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (child_id, parent["experiment_id"], number, RunStatus.RUNNING.value, _num(ev.get("t")) or time.time(),
             _num(ev.get("t")), parent_id, display if isinstance(display, str) else None, parent["compute_target"],
             parent["submitted_by"], parent["os_user"], parent["submit_host"]),
        )

    def finish_children(self, parent_id: str, status: RunStatus, ended_at: float) -> None:
        """Children still open when their parent ends take its final status."""
        error = None if status == RunStatus.COMPLETED else f"parent run {parent_id} ended {status.value}"
        with self.tx() as db:
            todo = [parent_id]
            while todo:
                pid = todo.pop()
                kids = [r[0] for r in db.execute("SELECT id FROM runs WHERE parent_id = ?", (pid,))]
                db.execute(
                    f"UPDATE runs SET status = ?, error = COALESCE(error, ?), ended_at = ? WHERE parent_id = ? "
                    f"AND status NOT IN ({', '.join('?' * len(_TERMINAL_VALUES))})",
                    (status.value, error, ended_at, pid, *_TERMINAL_VALUES),
                )
                todo.extend(kids)

    def metric_events(self, run_id: str, name: str | None = None,
                      keep: Callable[[str], bool] | None = None) -> Iterator[tuple[str, str, Any]]:
        """(kind, name, value) of each logged value, in logging order (batches expanded); with
        ``keep``, only the metrics whose name it keeps (asked once per stored row, not per value)."""
        for kind, n, value, _step, _ts, packed in self._metric_rows(run_id, name):
            if keep is not None and not keep(n):
                continue
            if packed is not None:
                yield from (("scalar", n, v) for v in unpack_scalars(packed, extras=False)[0])
            else:
                yield kind, n, json.loads(value)

    def metric_rows(self, run_id: str) -> list[dict[str, Any]]:
        """Every logged value with its step and time, in logging order (batches expanded)."""
        out: list[dict[str, Any]] = []
        for kind, n, value, step, ts, packed in self._metric_rows(run_id, None):
            if packed is None:
                out.append({"kind": kind, "name": n, "value": value, "step": step, "ts": ts})
                continue
            vals, times, steps = unpack_scalars(packed)
            for i, v in enumerate(vals):
                out.append({"kind": "scalar", "name": n, "value": _json_value(v),
                            "step": steps[i] if steps else None, "ts": times[i] if times else None})
        return out

    def _metric_rows(self, run_id: str, name: str | None) -> Iterator[tuple]:
        cur = self.db.cursor()
        cur.row_factory = None  # plain tuples: many rows
        sql = ("SELECT kind, name, value, step, ts, packed FROM metrics "
               "WHERE run = (SELECT rk FROM runs WHERE id = ?)")
        args: tuple = (run_id,)
        if name is not None:
            sql += " AND name = ?"
            args += (name,)
        yield from cur.execute(sql + " ORDER BY seq", args)

    def models(self, name: str | None = None) -> list[dict[str, Any]]:
        """Registered models (run.register_model), newest version first per name."""
        sql = "SELECT * FROM models" + (" WHERE name = ?" if name else "") + " ORDER BY name, version DESC"
        out = []
        for row in self.db.execute(sql, (name,) if name else ()):
            d = dict(row)
            d["tags"], d["properties"] = json.loads(d["tags"] or "{}"), json.loads(d["properties"] or "{}")
            out.append(d)
        return out

    # -- tags and properties ------------------------------------------------------------
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        with self.tx() as db:
            db.executemany("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", [(run_id, k, v) for k, v in tags.items()])

    def add_properties(self, run_id: str, props: dict[str, str]) -> None:
        with self.tx() as db:
            db.executemany("INSERT OR IGNORE INTO properties VALUES (?, ?, ?)", [(run_id, k, v) for k, v in props.items()])

    def tags(self, run_id: str) -> dict[str, str]:
        return {k: v for k, v in self.db.execute("SELECT key, value FROM tags WHERE run_id = ? ORDER BY key", (run_id,))}

    def properties(self, run_id: str) -> dict[str, str]:
        return {k: v for k, v in self.db.execute("SELECT key, value FROM properties WHERE run_id = ? ORDER BY key", (run_id,))}

    def experiment_names(self) -> list[str]:
        return [name for (name,) in self.db.execute("SELECT name FROM experiments ORDER BY name")]

    # -- what the portal shows (its queries live here: the store owns its schema) ------------
    def latest_scalar(self, run_id: str, name: str) -> Any:
        """The last value logged for scalar metric ``name`` (None if none)."""
        row = self.db.execute(
            "SELECT value, packed FROM metrics WHERE run = (SELECT rk FROM runs WHERE id = ?) AND name = ? "
            "AND kind IN ('scalar', 'scalars') ORDER BY seq DESC LIMIT 1", (run_id, name)).fetchone()
        return None if row is None else unpack_scalars(row[1])[0][-1] if row[1] else json.loads(row[0])

    def experiment_summaries(self) -> list[tuple[str, int, float | None, int]]:
        """(experiment, top-level runs, newest run's creation time, unfinished runs), newest first."""
        return [(n, c, t, a or 0) for n, c, t, a in self.db.execute(
            "SELECT e.name, COUNT(r.id), MAX(r.created_at), SUM(CASE WHEN r.status IN ('Running', 'Starting', 'Queued', "
            "'Preparing', 'Finalizing', 'CancelRequested') THEN 1 ELSE 0 END) FROM experiments e LEFT JOIN runs r "
            "ON r.experiment_id = e.id AND r.parent_id IS NULL GROUP BY e.name ORDER BY MAX(r.created_at) DESC NULLS LAST")]

    def metric_names(self, run_id: str) -> list[tuple[str, str, int]]:
        """(name, kind, number of values) of a run's metrics, in the order they were first logged."""
        return [tuple(row) for row in self.db.execute(  # type: ignore[misc]
            "SELECT name, CASE kind WHEN 'scalars' THEN 'scalar' ELSE kind END AS k, "
            "SUM(CASE kind WHEN 'scalars' THEN CAST(value AS INTEGER) ELSE 1 END) FROM metrics "
            "WHERE run = (SELECT rk FROM runs WHERE id = ?) GROUP BY name, k ORDER BY MIN(seq)", (run_id,))]

    def metric_kinds(self, run_id: str, name: str) -> set[str]:
        return {k for (k,) in self.db.execute(
            "SELECT DISTINCT kind FROM metrics WHERE run = (SELECT rk FROM runs WHERE id = ?) AND name = ?", (run_id, name))}

    def logged_images(self, run_id: str) -> list[tuple[str, Any]]:
        """(name, the artifact's name) of every image the run logged, in order."""
        return [(n, json.loads(v)) for n, v in self.db.execute(
            "SELECT name, value FROM metrics WHERE run = (SELECT rk FROM runs WHERE id = ?) AND kind = 'image' "
            "ORDER BY seq", (run_id,))]

    def scalar_rows(self, run_id: str, name: str) -> Iterator[tuple[Any, Any, Any, Any]]:
        """(value JSON, step, time, packed batch or None) of scalar metric ``name``, in order (plain tuples)."""
        cur = self.db.cursor()
        cur.row_factory = None  # plain tuples: many rows
        yield from cur.execute(
            "SELECT value, step, ts, packed FROM metrics WHERE run = (SELECT rk FROM runs WHERE id = ?) AND name = ? "
            "AND kind IN ('scalar', 'scalars') ORDER BY seq", (run_id, name))

    def change_mark(self, run_id: str) -> tuple[str, int, bool] | None:
        """(status, newest metric's sequence number, synced): what a watcher compares."""
        row = self.db.execute(
            "SELECT status, (SELECT MAX(seq) FROM metrics WHERE run = runs.rk), synced FROM runs WHERE id = ?",
            (run_id,)).fetchone()
        return None if row is None else (row[0], row[1] or 0, bool(row[2]))

    # -- snapshot stat cache -----------------------------------------------------------
    def stat_cache_get(self, paths: list[str]) -> dict[str, tuple]:
        out: dict[str, tuple] = {}
        for i in range(0, len(paths), 500):
            chunk = paths[i : i + 500]
            q = f"SELECT path, size, mtime_ns, ino, digest FROM stat_cache WHERE path IN ({','.join('?' * len(chunk))})"
            for row in self.db.execute(q, chunk):
                out[row[0]] = tuple(row[1:])
        return out

    def stat_cache_put(self, rows: Iterable[tuple]) -> None:
        with self.tx() as db:
            db.executemany("INSERT OR REPLACE INTO stat_cache VALUES (?, ?, ?, ?, ?)", list(rows))


def _no_space(path: Path) -> bool:
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail == 0 or st.f_favail == 0


def sync_warning(offset: int, what: str) -> dict:
    """An event recording what sync could not ingest: the run's ``runctl.sync_warning.<offset>`` property."""
    return {"k": "property", "n": f"runctl.sync_warning.{offset}", "v": f"events.jsonl at byte {offset}: {what}"}


def valid_event(ev: Any) -> bool:
    """Does an event from events.jsonl have the field types the store needs?"""
    if not isinstance(ev, dict) or "k" not in ev or "n" not in ev or "v" not in ev:
        return False
    if ev["k"] == "scalars":
        return (type(ev["n"]) is str and pack_scalars(ev) is not None and isinstance(ev.get("d"), (str, type(None)))
                and isinstance(ev.get("r"), (str, type(None))))
    return events_format.valid_fields(ev)


_PACK_HEAD = struct.Struct("<cIBBd")  # values' type code, count, times (0 none, 1 as floats, 2 as µs after
#                                      t0), has steps, t0


def pack_scalars(ev: dict[str, Any]) -> bytes | None:
    """A "scalars" event (the job's writer batches one metric's run.log() values into one
    line: {"k": "scalars", "n", "v": [...], "t0", "dt": [µs after t0, ...] (or "t": [...]),
    "s": [...]?}) as one blob: all floats or all ints (as logged), their times, their
    steps. None if the event is malformed."""
    if "vb" in ev:
        return _pack_raw(ev)
    values, steps = ev.get("v"), ev.get("s")
    if type(values) is not list or not values:
        return None
    kinds = set(map(type, values))
    code = "d" if kinds == {float} else "q" if kinds == {int} else None
    n = len(values)

    def ints(xs: Any) -> bool:
        return type(xs) is list and len(xs) == n and set(map(type, xs)) == {int}

    if code is None or (steps is not None and not ints(steps)):
        return None
    t0, mode, times = 0.0, 0, b""
    try:
        if "dt" in ev:
            if not ints(ev["dt"]) or type(ev.get("t0")) not in (int, float):
                return None
            t0, mode, times = float(ev["t0"]), 2, array("q", ev["dt"]).tobytes()
        elif ev.get("t") is not None:
            if type(ev["t"]) is not list or len(ev["t"]) != n or not set(map(type, ev["t"])) <= {float, int}:
                return None
            mode, times = 1, array("d", ev["t"]).tobytes()
        body = array(code, values).tobytes() + times + array("q", steps or []).tobytes()
    except OverflowError:
        return None
    return _PACK_HEAD.pack(code.encode(), n, mode, steps is not None, t0) + body


def _pack_raw(ev: dict[str, Any]) -> bytes | None:
    """A batch whose arrays the writer already packed (8-byte little-endian, base64): checked
    for sizes, then kept as it is (no per-value work)."""
    import binascii

    n, code = ev.get("c"), ev.get("vt")
    if type(n) is not int or n <= 0 or code not in ("d", "q"):
        return None
    parts = []
    for key, required in (("vb", True), ("tb", False), ("sb", False)):
        text = ev.get(key)
        if text is None and not required:
            parts.append(b"")
            continue
        if type(text) is not str:
            return None
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 8 * n:
            return None
        parts.append(_native(raw, "d" if key == "tb" else code if key == "vb" else "q"))
    return _PACK_HEAD.pack(code.encode(), n, 1 if parts[1] else 0, bool(parts[2]), 0.0) + b"".join(parts)


def _native(raw: bytes, code: str) -> bytes:
    if sys.byteorder == "little":
        return raw
    a = array(code)
    a.frombytes(raw)
    a.byteswap()
    return a.tobytes()


def unpack_scalars(blob: bytes, extras: bool = True) -> tuple[list[Any], list[float] | None, list[int] | None]:
    """(values, times, steps) of a packed batch; with ``extras`` False only the values (the
    others as None): what get_metrics needs, at the cost of one C-level conversion."""
    code, n, mode, has_steps, t0 = _PACK_HEAD.unpack_from(blob)
    at = _PACK_HEAD.size
    values = array(code.decode())
    values.frombytes(blob[at:at + 8 * n])
    if not extras:
        return values.tolist(), None, None
    at += 8 * n
    times: list[float] | None = None
    steps: list[int] | None = None
    if mode:
        t = array("d" if mode == 1 else "q")
        t.frombytes(blob[at:at + 8 * n])
        at += 8 * n
        times = cast("list[float]", t.tolist()) if mode == 1 else [t0 + d * 1e-6 for d in t]
    if has_steps:
        st = array("q")
        st.frombytes(blob[at:at + 8 * n])
        steps = cast("list[int]", st.tolist())
    return values.tolist(), times, steps


def _who() -> dict[str, str | None]:
    """The OS user and host a run is created from (a team store adds the database role)."""
    import getpass
    import socket

    try:
        user: str | None = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name known (a container without a passwd entry)
        user = None
    return {"os_user": user, "submit_host": socket.gethostname()}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _num(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) else None


def _run_key(db: sqlite3.Connection, run_id: str) -> int:
    return int(db.execute("SELECT rk FROM runs WHERE id = ?", (run_id,)).fetchone()[0])


def _json_value(value: Any) -> str:
    """json.dumps, with a fast path for the finite floats and ints that most metrics are."""
    t = type(value)
    if t is float and value - value == 0:
        return repr(value)
    if t is int:
        return str(value)
    return json.dumps(value)


def _encode(key: str, value: Any) -> Any:
    if key in ("handle", "spec") and value is not None:
        return json.dumps(value)
    if isinstance(value, RunStatus):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value

