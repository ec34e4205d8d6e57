#!/usr/bin/env bash
# Docker Engine for the tests: install docker.io, start dockerd, build the test images
# offline (no registry is reachable). Idempotent: what is already there is left alone.
#   local/python:3.11-bookworm   Debian minbase + python3 (debootstrap, then docker import)
#   local/python-pip:3.11-bookworm  the same + pip (from a wheel the host downloads), for image builds
#   local/nopython:1             busybox only, for jobs in images without Python
set -euo pipefail
PY_IMAGE=${RUNCTL_TEST_IMAGE:-local/python:3.11-bookworm}
PIP_IMAGE=local/python-pip:3.11-bookworm
NOPY_IMAGE=local/nopython:1
CACHE=/var/cache/runctl-test
export DEBIAN_FRONTEND=noninteractive

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    mkdir -p /var/log
    setsid -f dockerd >/var/log/runctl-test-dockerd.log 2>&1 </dev/null  # outlives this shell
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not come up; see /var/log/runctl-test-dockerd.log" >&2; exit 1; }
fi

# The test images, checked by running them (a tag can point at a broken image: an import
# someone else left unfinished), and (re)built under a lock, one builder at a time.
mkdir -p "$CACHE"
exec 9>"$CACHE/images.lock"
flock 9
works() { docker run --rm "$@" >/dev/null 2>&1; }
broken() {  # the image is there but does not work: say so (building it again moves the tag)
    if docker image inspect "$1" >/dev/null 2>&1; then
        echo "test image $1 is there but does not work ($2); building it again" >&2
    fi
}

if ! works "$PY_IMAGE" python3 -c 'print(1)'; then
    broken "$PY_IMAGE" "python3 does not run in it"
    rootfs="$CACHE/rootfs-bookworm"
    if [ ! -x "$rootfs/usr/bin/python3" ]; then
        rm -rf "$rootfs"
        mkdir -p "$CACHE"
        debootstrap --variant=minbase --include=python3 bookworm "$rootfs" >"$CACHE/debootstrap.log" 2>&1 \
            || { echo "debootstrap failed; see $CACHE/debootstrap.log" >&2; exit 1; }
    fi
    tar -C "$rootfs" -c . | docker import - "$PY_IMAGE" >/dev/null
fi

if ! works "$PIP_IMAGE" python3 -m pip --version; then
    broken "$PIP_IMAGE" "python3 -m pip does not run in it"
    d=$(mktemp -d)
    repo=$(cd "$(dirname "$0")/../.." && pwd)
    py=python3
    [ -x "$repo/.venv/bin/python" ] && py="$repo/.venv/bin/python"  # has pip even where Debian's python3 has not
    "$py" -m pip download -q --no-deps -d "$d" pip
    whl=$(basename "$d"/pip-*.whl)
    printf 'FROM %s\nCOPY %s /tmp/%s\nRUN python3 /tmp/%s/pip install --no-index --break-system-packages /tmp/%s && rm /tmp/%s\n' \
        "$PY_IMAGE" "$whl" "$whl" "$whl" "$whl" "$whl" >"$d/Dockerfile"
    docker build -q -t "$PIP_IMAGE" "$d" >/dev/null
    rm -rf "$d"
fi

if ! works "$NOPY_IMAGE" sh -c true; then
    broken "$NOPY_IMAGE" "sh does not run in it"
    d=$(mktemp -d)
    mkdir -p "$d/bin" "$d/tmp"
    cp /bin/busybox "$d/bin/busybox"
    for cmd in sh echo cat ls sleep printf id env; do ln -s busybox "$d/bin/$cmd"; done
    tar -C "$d" -c . | docker import -c 'ENV PATH=/bin' - "$NOPY_IMAGE" >/dev/null
    rm -rf "$d"
fi
flock -u 9
docker run --rm "$PY_IMAGE" python3 -c 'import sys; print("docker ok:", sys.version.split()[0])'
