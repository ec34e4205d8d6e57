"""The store: the run history and the files it points at. It alone knows its layout on disk
and its schema: sqlite (the ``Store`` API: runs, metrics, logs, files) and snapshot (the
content-addressed object cache and the snapshots of source directories) live here; private
makes what the store creates readable by its owner only. Backends receive the services
they need (``Store.services()``), never the store's directory."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runctl.config.workspace import Workspace
    from runctl.store.sqlite import Store


def open_store(ws: Workspace) -> Store:
    """The workspace's store: this machine's SQLite folder, or the team store its config
    names (PostgreSQL + a shared artifacts folder; psycopg is imported only then)."""
    from runctl.store.sqlite import Store

    if ws.store_url is None:
        return Store(ws.store_dir)
    from runctl.errors import ConfigError

    if not ws.artifacts:
        raise ConfigError("a team store needs `artifacts:` too: the shared folder for snapshots, logs and outputs",
                          file=str(ws.config_path or "RUNCTL_ARTIFACTS"), field="artifacts",
                          hint="add artifacts: /shared/runctl (the same path on every teammate's machine)")
    if "://" in ws.artifacts and not ws.artifacts.startswith("s3://"):
        raise ConfigError(f"artifacts {ws.artifacts}: a shared folder or an S3 bucket (s3://BUCKET/PREFIX)",
                          file=str(ws.config_path or "RUNCTL_ARTIFACTS"), field="artifacts",
                          hint="give a path every teammate's machine mounts, e.g. /shared/runctl, or s3://...")
    try:
        from runctl.store.postgres import PgStore

        if ws.artifacts.startswith("s3://"):
            import boto3  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"the team store needs psycopg, which is not installed here ({e})",
                          file=str(ws.config_path or "RUNCTL_STORE"), field="store",
                          hint="pip install 'runctl[team]'") from None
    from pathlib import Path

    return PgStore(ws.store_url, ws.artifacts if ws.artifacts.startswith("s3://") else Path(ws.artifacts), ws.store_dir)
