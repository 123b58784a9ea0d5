#!/usr/bin/env bash
# Prepare this machine for `make test`: Dovecot and OpenSSL for the IMAP tests, PostgreSQL
# on 127.0.0.1:5432 (user postgres without password, database test), then maildesk with
# its test extra. Each step checks first, so a second run changes nothing and is fast.
#
# Installing packages and starting PostgreSQL need root. Run as another user, the script
# lists what is missing and how to add it, and the tests skip what needs it. When the
# environment variable CI is set, anything missing is an error instead.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
PG_HOST=127.0.0.1
PG_PORT=5432
PG_USER=postgres
PG_DATABASE=test
PG_CLUSTER=main

missing=()

log() { printf 'setup-test-env: %s\n' "$*"; }
warn() { printf 'setup-test-env: %s\n' "$*" >&2; }
is_root() { [ "$(id -u)" -eq 0 ]; }
in_ci() { case "${CI:-}" in "" | 0 | false | no) return 1 ;; *) return 0 ;; esac; }

# Debian puts dovecot and the PostgreSQL tools in /usr/sbin and /usr/lib/postgresql,
# outside a normal user's PATH.
have() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }
newest_subdirectory() {
    find "$1" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1
}
have_postgres_server() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

postgres_answers() {
    # bash opens TCP connections through /dev/tcp. A closed port on loopback fails at once.
    (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null
}

postgres_accepts_test_user() {
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DATABASE" -w -Atqc 'SELECT 1' \
        >/dev/null 2>&1
}

as_postgres() { runuser -u postgres -- "$@"; }

install_system_packages() {
    local wanted=()
    have dovecot || wanted+=(dovecot-imapd)
    have openssl || wanted+=(openssl)
    if ! have_postgres_server || ! have psql; then
        wanted+=(postgresql)
    fi
    [ ${#wanted[@]} -eq 0 ] && return 0

    if ! is_root; then
        missing+=("Debian packages ${wanted[*]} (as root: apt-get install ${wanted[*]})")
        return 0
    fi
    if ! have apt-get; then
        missing+=("packages ${wanted[*]}: no apt-get here, install them by hand")
        return 0
    fi

    log "installing ${wanted[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${wanted[@]}" >/dev/null
}

start_postgres() {
    postgres_answers && return 0

    if ! is_root; then
        missing+=("PostgreSQL on $PG_HOST:$PG_PORT (as root: pg_ctlcluster 15 $PG_CLUSTER start)")
        return 0
    fi
    if ! have_postgres_server; then
        missing+=("the PostgreSQL server (apt-get install postgresql)")
        return 0
    fi

    # The newest version with a cluster in /etc/postgresql, else the newest installed.
    local version
    version=$(newest_subdirectory /etc/postgresql)
    [ -n "$version" ] || version=$(newest_subdirectory /usr/lib/postgresql)
    if [ ! -f "/etc/postgresql/$version/$PG_CLUSTER/postgresql.conf" ]; then
        log "creating PostgreSQL cluster $version/$PG_CLUSTER"
        pg_createcluster "$version" "$PG_CLUSTER" >/dev/null
    fi

    log "starting PostgreSQL $version/$PG_CLUSTER"
    pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" start
    if ! postgres_answers; then
        local hint="check port and listen_addresses in its postgresql.conf"
        missing+=("PostgreSQL on $PG_HOST:$PG_PORT: $version/$PG_CLUSTER listens elsewhere; $hint")
    fi
}

grant_test_access() {
    postgres_answers || return 0
    have psql || return 0
    postgres_accepts_test_user && return 0

    if ! is_root; then
        missing+=("database $PG_DATABASE with trust auth for $PG_USER on $PG_HOST (needs root)")
        return 0
    fi

    # The Debian cluster lets the postgres system user in over the unix socket (peer).
    local exists
    exists=$(as_postgres psql -p "$PG_PORT" -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")
    if [ "$exists" != 1 ]; then
        log "creating database $PG_DATABASE"
        as_postgres psql -p "$PG_PORT" -qc "CREATE DATABASE $PG_DATABASE"
    fi
    postgres_accepts_test_user && return 0

    # The first matching line of pg_hba.conf wins, so the trust line goes on top.
    local hba line="host all $PG_USER $PG_HOST/32 trust"
    hba=$(as_postgres psql -p "$PG_PORT" -Atqc 'SHOW hba_file')
    if ! grep -qxF "$line" "$hba"; then
        log "allowing $PG_USER from $PG_HOST without password in $hba"
        sed -i "1i $line" "$hba"
    fi
    as_postgres psql -p "$PG_PORT" -Atqc 'SELECT pg_reload_conf()' >/dev/null

    if ! postgres_accepts_test_user; then
        missing+=("login as $PG_USER to database $PG_DATABASE on $PG_HOST:$PG_PORT still fails")
    fi
}

# Succeed when maildesk is installed in editable mode from this directory and every
# requirement in setup.cfg (test extra included) is present. The stamp also changes with
# setup.cfg, pyproject.toml and the interpreter, so pip runs after each edit of those.
python_env_current() {
    "$PYTHON" - <<'EOF'
import configparser
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:
    sys.exit(1)

root = Path.cwd()
stamp = root / "build" / "test-env.stamp"
build_files = b"".join((root / name).read_bytes() for name in ("setup.cfg", "pyproject.toml"))
expected = hashlib.sha256(build_files + sys.executable.encode()).hexdigest()
if not stamp.exists() or stamp.read_text().strip() != expected:
    sys.exit(1)

installed_here = False
for dist in metadata.distributions(name="maildesk"):
    direct_url = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct_url.get("url") == root.as_uri() and direct_url.get("dir_info", {}).get("editable"):
        installed_here = True
if not installed_here:
    sys.exit(1)

config = configparser.ConfigParser()
config.read(root / "setup.cfg")
lines = config["options"]["install_requires"].splitlines()
lines += config["options.extras_require"]["test"].splitlines()
for line in lines:
    line = line.split("#")[0].strip()
    if not line:
        continue
    requirement = Requirement(line)
    if requirement.marker is not None and not requirement.marker.evaluate():
        continue
    try:
        version = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if not requirement.specifier.contains(version, prereleases=True):
        sys.exit(1)
EOF
}

write_python_env_stamp() {
    "$PYTHON" - <<'EOF'
import hashlib
import sys
from pathlib import Path

root = Path.cwd()
build_files = b"".join((root / name).read_bytes() for name in ("setup.cfg", "pyproject.toml"))
stamp = root / "build" / "test-env.stamp"
stamp.parent.mkdir(exist_ok=True)
stamp.write_text(hashlib.sha256(build_files + sys.executable.encode()).hexdigest() + "\n")
EOF
}

install_python_packages() {
    python_env_current && return 0

    log "installing maildesk in editable mode with the test extra"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --disable-pip-version-check \
        -e '.[test]'
    write_python_env_stamp
}

install_system_packages
start_postgres
grant_test_access
install_python_packages

if [ ${#missing[@]} -gt 0 ]; then
    warn "missing:"
    for item in "${missing[@]}"; do
        warn "  - $item"
    done
    if in_ci; then
        warn "CI is set, so the tests that need these would fail; stopping here."
        exit 1
    fi
    warn "Tests that need these will be skipped."
    is_root || warn "Run scripts/setup-test-env.sh as root (or with sudo) to add them."
fi
