#!/usr/bin/env bash
# A throwaway PostgreSQL server for ibpilot's test suite, on 127.0.0.1 only.
#
#   scripts/pg-test-server.sh [start]   ensure it runs; print its URL on stdout (idempotent)
#   scripts/pg-test-server.sh stop      stop it (the data stays under var/pg)
#   scripts/pg-test-server.sh status    exit 0 if it runs, 3 if not
#   scripts/pg-test-server.sh url       print the URL without starting anything
#
# Typical use:  export IBPILOT_TEST_PG_URL="$(scripts/pg-test-server.sh)"
#
# If no PostgreSQL server binaries are found (initdb/pg_ctl in PATH or under
# /usr/lib/postgresql/*/bin), Debian's `postgresql` package is installed with apt-get
# (needs root, as on CI). The cluster lives in ./var/pg (git-ignored), listens on
# 127.0.0.1:${IBPILOT_TEST_PG_PORT:-55432} with no Unix socket, trusts every connection
# (it is reachable from this machine only and holds test data only), and has a superuser
# `postgres` and a database `ibpilot_test`. PostgreSQL refuses to run as root, so as root
# the cluster is owned and run by the `postgres` system user.
#
# Environment: IBPILOT_TEST_PG_PORT (default 55432), IBPILOT_TEST_PG_DIR (default ./var/pg).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${IBPILOT_TEST_PG_PORT:-55432}"
BASE="${IBPILOT_TEST_PG_DIR:-$ROOT/var/pg}"
SUPERUSER=postgres
DATABASE=ibpilot_test
URL="postgresql+psycopg://${SUPERUSER}@127.0.0.1:${PORT}/${DATABASE}"
RUN_AS=""  # the OS user that owns and runs the cluster when we are root

say() { echo "pg-test-server: $*" >&2; }
die() { say "error: $*"; exit 1; }

has_server_binaries() { [[ -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" ]]; }

find_bindir() {
    local tool dir
    if tool="$(command -v pg_ctl 2>/dev/null)"; then
        dir="$(dirname "$(readlink -f "$tool")")"
        if has_server_binaries "$dir"; then echo "$dir"; return 0; fi
    fi
    # Debian keeps the server binaries out of PATH; take the newest major version.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4 -n -r); do
        if has_server_binaries "$dir"; then echo "$dir"; return 0; fi
    done
    return 1
}

install_postgresql() {
    [[ "$(id -u)" == 0 ]] || die "no PostgreSQL server binaries found; install Debian's 'postgresql' package (needs root)"
    command -v apt-get >/dev/null || die "no PostgreSQL server binaries found and no apt-get to install them"
    say "installing Debian's postgresql package (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
}

# Run a command as the cluster's owner (ourselves, or `postgres` when we are root).
as_owner() {
    if [[ -z "$RUN_AS" ]]; then
        (cd / && "$@")
    elif command -v runuser >/dev/null; then
        (cd / && runuser -u "$RUN_AS" -- "$@")
    else
        (cd / && su -s /bin/sh "$RUN_AS" -c "$(printf '%q ' "$@")")
    fi
}

choose_owner() {
    [[ "$(id -u)" == 0 ]] || return 0
    RUN_AS=postgres
    if ! id -u "$RUN_AS" >/dev/null 2>&1; then
        say "creating system user $RUN_AS"
        useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$RUN_AS"
    fi
    mkdir -p "$BASE"
    chown "$RUN_AS" "$BASE"
    if ! as_owner test -w "$BASE"; then
        # A parent directory is closed to other users (a checkout under /root, say).
        local fallback="${TMPDIR:-/tmp}/ibpilot-test-pg-$PORT"
        say "$RUN_AS cannot reach $BASE; using $fallback instead"
        BASE="$fallback"
        mkdir -p "$BASE"
        chown "$RUN_AS" "$BASE"
    fi
}

is_running() { as_owner "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

init_cluster() {
    say "creating a cluster in $DATA"
    mkdir -p "$DATA"
    [[ -z "$RUN_AS" ]] || chown "$RUN_AS" "$DATA"
    chmod 700 "$DATA"
    as_owner "$BINDIR/initdb" -D "$DATA" --username="$SUPERUSER" --auth=trust \
        --encoding=UTF8 --no-locale >"$BASE/initdb.log" 2>&1 ||
        { cat "$BASE/initdb.log" >&2; die "initdb failed"; }
    cat >>"$DATA/postgresql.conf" <<EOF

# ibpilot test server (scripts/pg-test-server.sh)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = ''
max_connections = 50
EOF
}

start_cluster() {
    say "starting PostgreSQL on 127.0.0.1:$PORT"
    touch "$BASE/server.log"
    [[ -z "$RUN_AS" ]] || chown "$RUN_AS" "$BASE/server.log"
    if ! as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 60 start >&2; then
        tail -n 20 "$BASE/server.log" >&2 || true
        die "PostgreSQL did not start (is port $PORT taken? set IBPILOT_TEST_PG_PORT)"
    fi
}

ensure_database() {
    local psql=("$BINDIR/psql" -h 127.0.0.1 -p "$PORT" -U "$SUPERUSER" -X -q -v ON_ERROR_STOP=1)
    if [[ "$("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]]; then
        say "creating database $DATABASE"
        "${psql[@]}" -d postgres -c "CREATE DATABASE $DATABASE" >&2
    fi
}

main() {
    local command="${1:-start}"
    case "$command" in
        url) echo "$URL"; return 0 ;;
        start | stop | status) ;;
        *) die "unknown command '$command' (start, stop, status, url)" ;;
    esac
    if ! BINDIR="$(find_bindir)"; then
        [[ "$command" == start ]] || { say "no PostgreSQL installed"; return 3; }
        install_postgresql
        BINDIR="$(find_bindir)" || die "the postgresql package installed no server binaries"
    fi
    choose_owner
    DATA="$BASE/data"
    case "$command" in
        status)
            if is_running; then say "running ($DATA)"; return 0; fi
            say "not running"; return 3 ;;
        stop)
            if [[ -f "$DATA/PG_VERSION" ]] && is_running; then
                as_owner "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2
            else
                say "not running"
            fi
            return 0 ;;
    esac
    [[ -f "$DATA/PG_VERSION" ]] || init_cluster
    if is_running; then say "already running ($DATA)"; else start_cluster; fi
    ensure_database
    echo "$URL"
}

main "$@"
