#!/usr/bin/env bash
# Create the project's virtual environment, so maildesk and its dependencies never touch
# the system Python (Debian 12 marks it externally managed, and pip refuses to write there).
# Usage: scripts/make-venv.sh PYTHON VENV
set -euo pipefail

python=${1:-python3}
venv=${2:-.venv}

if "$python" -m venv "$venv" 2>/dev/null; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    exit 0
fi

rm -rf "$venv"
# Debian splits venv (and ensurepip) into the python3-venv package.
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make-venv: installing python3-venv" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv \
        >/dev/null
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    exit 0
fi

echo "make-venv: '$python -m venv $venv' failed; install your distribution's venv package" \
     "(Debian: apt-get install python3-venv) and run make again" >&2
exit 1
