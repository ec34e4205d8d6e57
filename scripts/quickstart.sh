#!/usr/bin/env bash
# Install runctl into ./.venv and run the hello example end to end on the local backend.
# Idempotent; on a fresh Debian machine run it as root (it installs python3-venv if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
.venv/bin/python -m pip install -q .
echo "runctl installed in $(pwd)/.venv (activate it with: source .venv/bin/activate)"
.venv/bin/runctl submit examples/hello/job.yaml --follow
.venv/bin/runctl list --limit 5
