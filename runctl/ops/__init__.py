"""Operations: what a runctl command does, written once for the CLI, the Python API and the
portal. submit (and sweep, its fan-out), runs (find, wait, cancel, rerun), sync (a backend's
new events and logs into the store, through answers' checks), staging (RUN_DIR through a
backend's transport), gc, interactive (runs started in this process) and session (the
workspace, store and backends one command uses)."""
