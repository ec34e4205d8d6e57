"""`runctl store init`: the team store's schema, its two group roles and the policies by
which PostgreSQL itself (not the client) decides who may change what.

- ``runctl_users`` (teammates: ``GRANT runctl_users TO bob``) read every run and add to
  any (a run is synced by whichever teammate's command reaches its backend: its metrics,
  logs' offsets and state); ``runctl_admin`` (a member of runctl_users) may change anyone's.
- A run belongs to the role that submitted it (``runs.submitted_by``, set by the database).
  Only its owner (or runctl_admin) changes what a person decides about a run: cancel it,
  its name, description, tags and properties, or deletes it. Row-level security and a
  trigger say so, so a teammate with psql is refused exactly as runctl is.

Running it again upgrades the schema or changes nothing. Run it as a role that may create
tables and roles (the database's owner, with CREATEROLE).
"""

from __future__ import annotations

from typing import Any

from runctl.store.postgres import PG_SCHEMA_VERSION
from runctl.store.sqlite import BASE_VERSION, schema_statements

TABLES = ("experiments", "runs", "metrics", "tags", "properties", "models")

# The tables are the SQLite store's (runctl.store.sqlite.BASE_DDL and UPGRADES, in
# PostgreSQL's types): one schema, one migration path. Beside them: the version, and
# indexes for the queries a team's many runs make frequent.
EXTRA_DDL = """
CREATE TABLE IF NOT EXISTS runctl_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_id);
CREATE INDEX IF NOT EXISTS runs_submitted_by ON runs(submitted_by);
"""

ROLES = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'runctl_users') THEN CREATE ROLE runctl_users NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'runctl_admin') THEN CREATE ROLE runctl_admin NOLOGIN; END IF;
END $$;
GRANT runctl_users TO runctl_admin;
GRANT SELECT ON runctl_meta TO runctl_users;
GRANT SELECT, INSERT ON experiments TO runctl_users;
GRANT SELECT, INSERT, UPDATE, DELETE ON runs, metrics, tags, properties, models TO runctl_users;
GRANT USAGE ON SEQUENCE experiments_id_seq, runs_rk_seq, metrics_seq_seq TO runctl_users;
"""

POLICIES = """
CREATE OR REPLACE FUNCTION runctl_may_change(owner text) RETURNS boolean LANGUAGE sql STABLE AS
    $$ SELECT owner = current_user OR pg_has_role(current_user, 'runctl_admin', 'MEMBER') $$;
CREATE OR REPLACE FUNCTION runctl_owner(run text) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public AS $$ SELECT submitted_by FROM runs WHERE id = run $$;
CREATE OR REPLACE FUNCTION runctl_owner_of_key(key bigint) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public AS $$ SELECT submitted_by FROM runs WHERE rk = key $$;

-- What a person decides about a run is its owner's; what its backend reports (state,
-- offsets, end) any teammate's sync records.
CREATE OR REPLACE FUNCTION runctl_guard_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF runctl_may_change(OLD.submitted_by) THEN
        RETURN NEW;
    END IF;
    IF NEW.submitted_by IS DISTINCT FROM OLD.submitted_by OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.experiment_id IS DISTINCT FROM OLD.experiment_id OR NEW.number IS DISTINCT FROM OLD.number
       OR NEW.kind IS DISTINCT FROM OLD.kind OR NEW.parent_id IS DISTINCT FROM OLD.parent_id
       OR NEW.display_name IS DISTINCT FROM OLD.display_name OR NEW.description IS DISTINCT FROM OLD.description
       OR NEW.compute_target IS DISTINCT FROM OLD.compute_target OR NEW.backend IS DISTINCT FROM OLD.backend
       OR NEW.snapshot_id IS DISTINCT FROM OLD.snapshot_id OR NEW.spec IS DISTINCT FROM OLD.spec
       OR NEW.handle IS DISTINCT FROM OLD.handle OR NEW.unique_key IS DISTINCT FROM OLD.unique_key
       OR NEW.os_user IS DISTINCT FROM OLD.os_user OR NEW.submit_host IS DISTINCT FROM OLD.submit_host
       OR (NEW.status = 'CancelRequested' AND OLD.status IS DISTINCT FROM 'CancelRequested')
       OR (NEW.status = 'Canceled' AND OLD.status NOT IN ('CancelRequested', 'Canceled'))
       OR NEW.events_offset < OLD.events_offset THEN
        RAISE EXCEPTION 'run % belongs to %', OLD.id, OLD.submitted_by USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS runctl_guard_run ON runs;
CREATE TRIGGER runctl_guard_run BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION runctl_guard_run();

ALTER TABLE runs ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS runctl_read ON runs;
CREATE POLICY runctl_read ON runs FOR SELECT TO runctl_users USING (true);
DROP POLICY IF EXISTS runctl_add ON runs;
CREATE POLICY runctl_add ON runs FOR INSERT TO runctl_users WITH CHECK (
    submitted_by = current_user OR (parent_id IS NOT NULL AND submitted_by = runctl_owner(parent_id)));
DROP POLICY IF EXISTS runctl_sync ON runs;
CREATE POLICY runctl_sync ON runs FOR UPDATE TO runctl_users USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS runctl_remove ON runs;
CREATE POLICY runctl_remove ON runs FOR DELETE TO runctl_users USING (runctl_may_change(submitted_by));
"""

# tags, properties, models: anyone adds (a sync ingests what the job logged); only the
# owner changes or removes. metrics: append-only for all but the owner.
PER_RUN_POLICIES = """
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS runctl_read ON {table};
CREATE POLICY runctl_read ON {table} FOR SELECT TO runctl_users USING (true);
DROP POLICY IF EXISTS runctl_add ON {table};
CREATE POLICY runctl_add ON {table} FOR INSERT TO runctl_users WITH CHECK (true);
DROP POLICY IF EXISTS runctl_change ON {table};
CREATE POLICY runctl_change ON {table} FOR UPDATE TO runctl_users USING (runctl_may_change({owner}));
DROP POLICY IF EXISTS runctl_remove ON {table};
CREATE POLICY runctl_remove ON {table} FOR DELETE TO runctl_users USING (runctl_may_change({owner}));
"""


def init(db: Any) -> str:
    """Create or upgrade the schema, roles and policies in one transaction; what it did."""
    db.execute("BEGIN")
    try:
        db.execute("SELECT pg_advisory_xact_lock(hashtext('runctl store init'))")
        exists = db.execute("SELECT to_regclass('runs')").fetchone()[0] is not None
        before = None
        if exists and db.execute("SELECT to_regclass('runctl_meta')").fetchone()[0] is not None:
            row = db.execute("SELECT value FROM runctl_meta WHERE key = 'schema_version'").fetchone()
            before = int(row[0]) if row else 0
        elif exists:
            before = 0
        if before is not None and before > PG_SCHEMA_VERSION:
            raise RuntimeError(f"schema version {before} is newer than this runctl's ({PG_SCHEMA_VERSION})")
        for stmt in schema_statements("postgres", None if before is None or before < BASE_VERSION else before):
            db.execute(stmt)
        db.execute(EXTRA_DDL)
        db.execute(ROLES)
        db.execute(POLICIES)
        for table, owner in (("tags", "runctl_owner(run_id)"), ("properties", "runctl_owner(run_id)"),
                             ("models", "runctl_owner(run_id)"), ("metrics", "runctl_owner_of_key(run)")):
            db.execute(PER_RUN_POLICIES.format(table=table, owner=owner))
        from runctl import __version__

        for key, value in (("schema_version", str(PG_SCHEMA_VERSION)), ("runctl_version", __version__)):
            db.execute("INSERT INTO runctl_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                       (key, value))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if before is None:
        return f"created the runctl schema (version {PG_SCHEMA_VERSION}), roles runctl_users and runctl_admin"
    if before < PG_SCHEMA_VERSION:
        return f"upgraded the runctl schema from version {before} to {PG_SCHEMA_VERSION}"
    return f"the runctl schema is up to date (version {PG_SCHEMA_VERSION}); policies refreshed"
