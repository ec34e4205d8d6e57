"""`runctl store push`: a user's runs from this machine's store into the team store, whole
(the record, metrics, tags, properties, models, logs, outputs and the snapshot's code).

Each run's files go first (objects are content-addressed: what a teammate stored already is
not copied again), then its database rows in ONE transaction of the team store. So a push
killed at any instant leaves each run either absent (the next push copies it) or complete
(the next push skips it): nothing lost, nothing doubled. The local store is only read.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runctl.errors import InputError
from runctl.ops.staging import code_files

if TYPE_CHECKING:
    from runctl.ops.session import Session
    from runctl.store.sqlite import Store


@dataclass
class Pushed:
    copied: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    values: int = 0


def push(session: Session, experiment: str | None = None) -> Pushed:
    from runctl.store.sqlite import Store

    team = session.store
    local_dir = session.ws.store_dir
    if session.ws.store_url is None:
        raise InputError("runctl store push copies this machine's runs into the team store, and none is configured: "
                         "set `store: postgresql://...` and `artifacts:` in .runctl/config.yaml first")
    if not (local_dir / "runctl.db").is_file():
        return Pushed()
    local = Store(local_dir)
    out = Pushed()
    try:
        records = sorted(local.runs(experiment=experiment, include_children=True), key=lambda r: (r.created_at, r.id))
        for record in records:
            if not (record.synced or (record.status.is_terminal and record.handle is None)):
                out.unfinished.append(record.id)
                continue
            doc = local.export_run(record.id)
            _copy_files(local, team, record.id, record.snapshot_id)
            if team.import_run(doc):
                out.copied.append(record.id)
                out.values += len(doc["metrics"])
            else:
                out.present.append(record.id)
    finally:
        local.close()
    return out


def _copy_files(local: Store, team: Store, run_id: str, snapshot_id: str | None) -> None:
    if snapshot_id:
        try:
            files = code_files(local.objects, snapshot_id)
        except OSError:
            files = ()  # a snapshot gc removed: the run keeps its record
        for _, digest in files:
            if not team.objects.object_path(digest).exists():
                team.objects.add_file(local.objects.object_path(digest))
        if files:
            team.objects.put_manifest(local.objects.manifest(snapshot_id))
    src = local.run_dir(run_id)
    if src.is_dir():
        shutil.copytree(src, team.run_dir(run_id), symlinks=True, dirs_exist_ok=True)
