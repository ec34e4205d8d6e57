"""Batched metrics: the job's writer sends one metric's run.log() values of a flush as one
"scalars" line (context/_writer.encode_batch), the store keeps it as one packed row
(store.pack_scalars), and every reader expands it: nothing lost, duplicated, reordered
or retyped, and a forged batch is refused without losing its neighbours."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

from runctl.context._writer import encode_batch
from runctl.store import Store
from runctl.sync import sync_run

from .fakes import FakeBackend


def lines(events: list[tuple]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in encode_batch(events).split("\n")]


def test_the_writer_batches_one_metrics_plain_numbers_and_keeps_the_rest_in_place() -> None:
    events = [("scalar", "loss", 1.0, None, 1.0, None), ("scalar", "acc", 1, None, 1.1, None),
              ("tag", "t", "v", None, 1.2, None), ("scalar", "loss", 0.5, None, 1.3, None),
              ("scalar", "acc", 2, None, 1.4, None), ("scalar", "loss", True, None, 1.5, None),
              ("scalar", "loss", 0.25, None, 1.6, {"r": "child"}), ("scalar", "loss", 0.1, 7, 1.7, None),
              ("scalar", "loss", float("nan"), None, 1.8, None)]
    got = lines(events)
    assert [g["k"] for g in got] == ["scalars", "scalars", "tag", "scalar", "scalar", "scalar"]
    from runctl.context._writer import unpack_line_values

    loss = unpack_line_values(got[0])
    assert loss[:2] == [1.0, 0.5] and math.isnan(loss[2]) and got[0]["c"] == 3 and got[0]["vt"] == "d"
    assert unpack_line_values(got[1]) == [1, 2] and got[1]["vt"] == "q", "ints stay ints"
    assert set(got[1]) == {"k", "n", "v", "c", "vt", "vb", "tb"}, "packed as the store keeps them"
    assert got[3]["v"] is True and got[4] == {"k": "scalar", "n": "loss", "v": 0.25, "t": 1.6, "r": "child"}
    assert got[5]["s"] == 7, "a value with a step does not join values without one"


def test_batches_are_stored_once_and_read_back_exactly(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    events = [("scalar", "loss", 1.0 / (i + 1), None, 100.0 + i, None) for i in range(1000)]
    events += [("scalar", "epoch", i, i * 10, 200.0 + i, {"d": "the epoch"}) for i in range(5)]
    events += [("scalar", "loss", float("inf"), None, 300.0, None), ("scalar", "loss", -0.0, None, 300.5, None)]
    (backend.run_dir / "events.jsonl").write_text(encode_batch(events) + "\n")
    for _ in range(2):  # idempotent
        sync_run(store, backend, store.get(rid))
    losses = [v for _, n, v in store.metric_events(rid) if n == "loss"]
    assert losses[:1000] == [1.0 / (i + 1) for i in range(1000)] and losses[1000:] == [float("inf"), -0.0]
    epochs = [v for _, n, v in store.metric_events(rid) if n == "epoch"]
    assert epochs == [0, 1, 2, 3, 4] and all(type(v) is int for v in epochs)
    rows = [r for r in store.metric_rows(rid) if r["name"] == "epoch"]
    assert [r["step"] for r in rows] == [0, 10, 20, 30, 40]
    assert [round(r["ts"], 6) for r in rows] == [200.0 + i for i in range(5)]
    assert store.db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 2, "one row per batch"


def test_a_forged_batch_is_skipped_and_its_neighbours_kept(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    good = {"k": "scalar", "n": "ok", "v": 1.0, "t": 0}
    forged = [{"k": "scalars", "n": "x", "v": [1, "two"], "t": [0, 0]},
              {"k": "scalars", "n": "x", "v": [1.0, 2.0], "t": [0]},
              {"k": "scalars", "n": "x", "v": [1, 2], "t": [0, 0], "s": [1, 2.5]},
              {"k": "scalars", "n": "x", "v": [2 ** 70, 1], "t": [0, 0]},
              {"k": "scalars", "n": "x", "v": [], "t": []},
              {"k": "scalars", "n": "x", "v": [1.0], "t0": 1.0, "dt": [0.5]},
              {"k": "scalars", "n": "x", "v": [1.0], "t0": "now", "dt": [0]},
              {"k": "scalars", "n": "x", "v": None, "c": 2, "vt": "d", "vb": "AAAA"},  # 3 bytes for 2 values
              {"k": "scalars", "n": "x", "v": None, "c": 1, "vt": "z", "vb": "AAAAAAAAAAA="},
              {"k": "scalars", "n": "x", "v": None, "c": 1, "vt": "d", "vb": "not base64!"}]
    with_times = {"k": "scalars", "n": "ok", "v": [2.0, 3.0], "t": [5.0, 6.0]}  # full times: accepted too
    (backend.run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [good, *forged, with_times]))
    sync_run(store, backend, store.get(rid))
    assert list(store.metric_events(rid)) == [("scalar", "ok", 1.0), ("scalar", "ok", 2.0), ("scalar", "ok", 3.0)]
    assert [r["ts"] for r in store.metric_rows(rid)][1:] == [5.0, 6.0]
    assert any(k.startswith("runctl.sync_warning") for k in store.properties(rid))


def test_a_version_2_store_gains_packed_metrics(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "runctl.db")
    store = Store(tmp_path)
    store.db.execute("PRAGMA user_version = 2")
    store.close()
    db.execute("CREATE TABLE t_old AS SELECT * FROM metrics")  # (drop the new column: a v2 table)
    db.execute("DROP TABLE metrics")
    db.execute("CREATE TABLE metrics (seq INTEGER PRIMARY KEY, run INTEGER NOT NULL, kind TEXT NOT NULL, "
               "name TEXT NOT NULL, value TEXT NOT NULL, step INTEGER, ts REAL, description TEXT)")
    db.commit()
    db.close()
    store = Store(tmp_path)
    assert "packed" in [r[1] for r in store.db.execute("PRAGMA table_info(metrics)")]
    from runctl.store import SCHEMA_VERSION

    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_huge_ints_and_every_reader_agree_on_a_packed_batch(fake: tuple[Store, FakeBackend, str]) -> None:
    store, backend, rid = fake
    events = [("scalar", "big", 2 ** 70, None, 1.0, None), ("scalar", "big", 1, None, 2.0, None),
              ("scalar", "x", 0.5, 3, 3.0, None), ("scalar", "x", 0.25, 4, 4.0, None)]
    (backend.run_dir / "events.jsonl").write_text(encode_batch(events) + "\n")
    sync_run(store, backend, store.get(rid))
    assert [v for _, n, v in store.metric_events(rid) if n == "big"] == [2 ** 70, 1], "beyond 64 bits: lines of their own"
    rows = [r for r in store.metric_rows(rid) if r["name"] == "x"]
    assert [(json.loads(r["value"]), r["step"], r["ts"]) for r in rows] == [(0.5, 3, 3.0), (0.25, 4, 4.0)]
