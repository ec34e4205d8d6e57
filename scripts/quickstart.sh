#!/usr/bin/env bash
# Install runctl into ./.venv and run the hello example end to end on the local backend.
# Idempotent; on a fresh Debian machine run it as root (it installs python3-venv if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q .
echo "runctl installed in $(pwd)/.venv (activate it with: source .venv/bin/activate)"
.venv/bin/runctl submit examples/hello/job.yaml --follow
.venv/bin/runctl list --limit 5
