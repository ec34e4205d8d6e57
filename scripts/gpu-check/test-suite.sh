#!/usr/bin/env bash
# On a machine that is not this project's usual Debian (the lent GPU host: Ubuntu,
# Python 3.12, no network): install runctl + pytest from ./.wheels and run every test that
# needs neither Docker nor numpy/matplotlib nor PyPI. Output to $OUT/pytest.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${SUITE_PY:-/opt/torch/.venv/bin/python3}
OUT=${OUT:-/tmp/suite-out}
mkdir -p "$OUT"
rm -rf /tmp/suite-venv && "$PY" -m venv /tmp/suite-venv
/tmp/suite-venv/bin/pip install -q --no-index --find-links .wheels -e . pytest 2>&1 | tail -3
(command -v git >/dev/null && echo "git: $(git --version)") || echo "no git here"
/tmp/suite-venv/bin/python -m pytest -q -p no:cacheprovider \
    -k "not numpy and not matplotlib and not notebook and not wheel_installs" \
    --deselect tests/test_docker_backend.py 2>&1 | tee "$OUT/pytest.txt" | tail -25
