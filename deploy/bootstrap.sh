#!/usr/bin/env bash
# Install what smapds needs on Debian, idempotently: system packages, .venv, the project in it.
# Used by `make demo` and `make test`; as root or as a user with sudo. A second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# PostgreSQL 15 + PostGIS 3 (the embedded cluster runs these binaries), psql, Python venv support, and
# the shell linter (the tests check deploy/*.sh with it).
packages=(postgresql-15 postgresql-15-postgis-3 postgresql-client-15 make shellcheck)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# Prometheus, for promtool and a real scrape in the tests. Installing it must not start its daemon
# (in a container without systemd, or on a developer's machine where the tests start their own):
# a policy-rc.d that refuses every start, only while dpkg runs, and the unit left disabled.
if ! dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q "install ok installed"; then
    echo "bootstrap: installing Debian package: prometheus (promtool; its daemon is not started)"
    policy=/usr/sbin/policy-rc.d
    own_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        own_policy=1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        prometheus >/dev/null || { [ -z "$own_policy" ] || $SUDO rm -f "$policy"; exit 1; }
    [ -z "$own_policy" ] || $SUDO rm -f "$policy"
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "bootstrap: smapds needs Python 3.11 or newer (found $(python3 --version))" >&2; exit 1; }

# The virtual environment, reinstalled only when the declared dependencies change.
stamp=.venv/.smapds-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing Python dependencies into .venv (pinned by constraints.txt)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
    echo "$want" > "$stamp"
fi
