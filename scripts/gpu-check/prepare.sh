#!/usr/bin/env bash
# Run here (with PyPI reachable) before a device check: fill ./.wheels (git-ignored) with
# wheels of runctl's dependencies and pytest for the lent GPU machine's Python 3.12 (and
# this machine's 3.11, to rehearse the check here first). Then, with the device tool,
# run `bash scripts/gpu-check/run.sh` or `bash scripts/gpu-check/test-suite.sh` there
# carrying ".wheels".
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .wheels
for v in 3.11 3.12; do
    python3 -m pip download -q --python-version "$v" --only-binary=:all: \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 -d .wheels \
        "typer>=0.15,<0.29" pyyaml jsonschema pathspec docker paramiko tenacity "setuptools>=77" wheel pytest
done
du -sh .wheels
