#!/usr/bin/env bash
# Install smapds as a systemd service on a Debian 12 host, idempotently: run it again after an
# update and it changes only what changed. As root, from a checkout:
#
#     sudo deploy/install.sh            # install or update, enable the unit (does not start it)
#     sudo deploy/install.sh --start    # ... and (re)start it
#
# What it does: Debian packages (Python venv support, PostgreSQL 15 + PostGIS 3 for the embedded
# database, the psql client), a system user `smapds`, the code in /opt/smapds/src with its virtual
# environment /opt/smapds/.venv (pinned by constraints.txt), the data directory /var/lib/smapds,
# /etc/smapds/smapds.env (settings; written once, never overwritten), /etc/smapds/credentials/
# (the Earthdata token and a libpq password file, created empty), and the unit
# /etc/systemd/system/smapds.service. At the end it prints what is left to the operator.
set -euo pipefail

PREFIX=/opt/smapds
DATA=/var/lib/smapds
ETC=/etc/smapds
UNIT=/etc/systemd/system/smapds.service
SERVICE_USER=smapds
START=""

for arg in "$@"; do
    case "$arg" in
        --start) START=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo deploy/install.sh)" >&2
    exit 1
fi
SRC=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "install: $*"; }

# 1. Debian packages, only the missing ones.
packages=(python3-venv postgresql-15 postgresql-15-postgis-3 postgresql-client-15 rsync)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 2. The service user: no login, no home outside the data directory.
if ! getent passwd "$SERVICE_USER" >/dev/null; then
    say "creating system user $SERVICE_USER"
    useradd --system --user-group --home-dir "$DATA" --no-create-home \
        --shell /usr/sbin/nologin --comment "smapds service" "$SERVICE_USER"
fi

# 3. Directories: code owned by root, data by the service, settings readable by its group only.
install -d -o root -g root -m 0755 "$PREFIX"
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$DATA"
install -d -o root -g "$SERVICE_USER" -m 0750 "$ETC"
install -d -o root -g root -m 0700 "$ETC/credentials"

# 4. The code and its virtual environment (editable install: the schema files in sql/ are read
#    from the source tree). Reinstalled only when the declared dependencies or the code changed.
rsync -a --delete --exclude .git --exclude .venv --exclude var --exclude '__pycache__' \
    --exclude '*.egg-info' "$SRC/" "$PREFIX/src/"
chown -R root:root "$PREFIX/src"
if [ ! -x "$PREFIX/.venv/bin/python" ]; then
    say "creating $PREFIX/.venv"
    python3 -m venv "$PREFIX/.venv"
fi
want=$(cd "$PREFIX/src" && cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
stamp="$PREFIX/.venv/.smapds-installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing smapds and its pinned dependencies into $PREFIX/.venv"
    "$PREFIX/.venv/bin/python" -m pip install -q --disable-pip-version-check \
        -c "$PREFIX/src/constraints.txt" -e "$PREFIX/src"
    echo "$want" > "$stamp"
fi

# 5. Settings: written once; the operator's edits are never overwritten.
if [ ! -f "$ETC/smapds.env" ]; then
    say "writing $ETC/smapds.env (edit it, then: systemctl restart smapds)"
    cat > "$ETC/smapds.env" <<'ENV'
# smapds settings (SMAPDS_* variables; the README lists them all). The unit sets
# SMAPDS_DATA_DIR=/var/lib/smapds, SMAPDS_LOG_FORMAT=json and the credential file paths.
SMAPDS_DOMAIN=china
# An external PostGIS (recommended for production); its password goes into
# /etc/smapds/credentials/pgpass as host:port:dbname:user:password, never here.
# SMAPDS_DATABASE_URL=postgresql://smapds_writer@db.example.org:5432/smapds
# Real data: NASA CMR with the Earthdata token in /etc/smapds/credentials/earthdata_token.
# SMAPDS_SOURCES={"SPL3SMP": {"transport": "cmr"}, "SPL3SMP_E": {"transport": "cmr"}}
# SMAPDS_SERVICE_FIRST_DATE=2024-01-01
# SMAPDS_INGEST_DIR=/var/lib/smapds/incoming
# SMAPDS_HTTP_ADDRESS=127.0.0.1
# SMAPDS_HTTP_PORT=9640
ENV
    chown root:"$SERVICE_USER" "$ETC/smapds.env"
    chmod 0640 "$ETC/smapds.env"
fi

# 6. Credentials: the unit loads both files (they must exist); empty means none.
for cred in earthdata_token pgpass; do
    if [ ! -f "$ETC/credentials/$cred" ]; then
        install -o root -g root -m 0600 /dev/null "$ETC/credentials/$cred"
    fi
done

# 7. The unit.
if ! cmp -s "$SRC/deploy/smapds.service" "$UNIT"; then
    say "installing $UNIT"
    install -o root -g root -m 0644 "$SRC/deploy/smapds.service" "$UNIT"
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable smapds.service >/dev/null 2>&1
    if [ -n "$START" ]; then
        systemctl restart smapds.service
        say "started: systemctl status smapds; journalctl -u smapds -f"
    fi
else
    say "systemd is not running here: the unit is installed but not enabled"
fi

cat <<'NEXT'
install: done. What is left to you:
  - settings:     /etc/smapds/smapds.env
  - Earthdata:    put the token into /etc/smapds/credentials/earthdata_token (mode 0600)
  - the database: without SMAPDS_DATABASE_URL the service runs its own PostGIS in
                  /var/lib/smapds/pg. For an external PostGIS server, once, as its administrator:
                    SMAPDS_DATABASE_URL=postgresql://ADMIN@HOST:5432/smapds \
                      /opt/smapds/.venv/bin/smapds db migrate
                  (creates the roles smapds_owner, smapds_writer, smapds_reader and the schema),
                  then: ALTER ROLE smapds_writer PASSWORD '...'; and for Grafana
                  ALTER ROLE smapds_reader PASSWORD '...'; write the writer's line
                  HOST:5432:smapds:smapds_writer:PASSWORD into /etc/smapds/credentials/pgpass
                  and set SMAPDS_DATABASE_URL=postgresql://smapds_writer@HOST:5432/smapds.
  - a model:      sudo -u smapds sh -c 'set -a; . /etc/smapds/smapds.env; \
                    SMAPDS_DATA_DIR=/var/lib/smapds /opt/smapds/.venv/bin/smapds \
                    train --start ... --end ... --models rf --freeze rf --activate'
  - start:        systemctl start smapds; curl -s 127.0.0.1:9640/healthz
NEXT
