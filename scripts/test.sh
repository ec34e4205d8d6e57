#!/usr/bin/env bash
# Run the whole test suite: install runctl (editable) with its test extras into ./.venv,
# lint and type-check (scripts/check), bring up the services the tests need
# (tests/infra/up.sh, idempotent), then pytest.
# Extra arguments go to pytest. With CI=true a service that cannot start fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
.venv/bin/python -m pip install -q -e '.[test]'
bash scripts/check
bash tests/infra/up.sh
exec .venv/bin/python -m pytest "$@"
