#!/usr/bin/env bash
# Device check (a lent GPU machine, see ../shared/ENVIRONMENT.md "A real GPU host";
# prepare ./.wheels here first with scripts/gpu-check/prepare.sh):
# install runctl from ./.wheels (no network there) into its own venv, run
# scripts/gpu-check/job.yaml on the local backend with the machine's torch Python as the
# job's interpreter (environment.python.interpreter_path), and collect what came back.
# Also measures run.log() there (bench/bench_logging.py). Results go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${GPU_PY:-/opt/torch/.venv/bin/python3}
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
echo "== machine"; (nvidia-smi -L || true); "$PY" --version; (command -v docker && docker info 2>&1 | head -3) || echo "no docker here"
rm -rf /tmp/gpu-rv && "$PY" -m venv /tmp/gpu-rv
/tmp/gpu-rv/bin/pip install -q --no-index --find-links .wheels .
export RUNCTL_HOME=/tmp/gpu-rh
rm -rf "$RUNCTL_HOME"
echo "== run"
t0=$(date +%s%N)
/tmp/gpu-rv/bin/runctl submit scripts/gpu-check/job.yaml --follow --set "environment.python.interpreter_path=$PY"
echo "submit --follow took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
/tmp/gpu-rv/bin/runctl status @last --json > "$OUT/status.json"
/tmp/gpu-rv/bin/runctl show @last --json > "$OUT/show.json"
/tmp/gpu-rv/bin/runctl metrics @last --json > "$OUT/metrics.json"
/tmp/gpu-rv/bin/runctl outputs @last "$OUT/outputs"
cat "$OUT/status.json"
/tmp/gpu-rv/bin/python - "$OUT/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print("loss values:", len(m["loss"]), "first", m["loss"][0], "last", m["loss"][-1])
print({k: v for k, v in m.items() if k != "loss"})
PY
echo "== bench_logging"
/tmp/gpu-rv/bin/python bench/bench_logging.py > "$OUT/bench_logging.md"
cat "$OUT/bench_logging.md"
