# Sourced by scripts/quickstart.sh and scripts/test.sh: make ./.venv (installing
# python3-venv on Debian when it is missing) with an up-to-date pip.
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv python3-pip >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
