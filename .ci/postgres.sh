#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, on 127.0.0.1 only.
#
#   eval "$(bash .ci/postgres.sh)"              # start (or reuse) one; prints the exports
#   bash .ci/postgres.sh stop "$FLUX_TEST_POSTGRES_DIR"   # stop it and remove its files
#
# Start installs Debian's `postgresql` package when no server binaries are found, initialises a
# cluster in a temporary directory owned by an unprivileged user (a server refuses to run as
# root), starts it on a free port and creates the database `flux_test`. Only the `export` lines go
# to stdout; progress and errors go to stderr. Running it again while that server is up just
# prints the same exports, so it is safe to call more than once.
#
# The cluster is tuned for tests, not for keeping data: fsync and synchronous_commit are off.
# It uses an ICU collation (as most production databases use a non-C one) so that the adapter's
# own `COLLATE "C"` columns are what keeps sort orders byte-wise.
set -euo pipefail

DEFAULT_DIR="/tmp/flux-ci-postgres"
DATABASE="flux_test"
SUPERUSER="flux"
RUN_AS="fluxci"
START_TIMEOUT=30 # seconds pg_ctl waits for the server

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

find_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    # Debian keeps the server binaries off PATH, one directory per major version; take the newest.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

install_server() {
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root"
    log "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
}

# Runs a command as the cluster's owner: the unprivileged user when we are root, else ourselves.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u "$RUN_AS" -- "$@"
        else
            su -s /bin/sh "$RUN_AS" -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

ensure_user() {
    [[ $(id -u) -eq 0 ]] || return 0
    if ! id -u "$RUN_AS" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_AS" >&2
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

print_exports() {
    local dir="$1" port
    port="$(cat "$dir/port")"
    echo "export FLUX_TEST_POSTGRES_DSN=postgresql://$SUPERUSER@127.0.0.1:$port/$DATABASE"
    echo "export FLUX_TEST_POSTGRES_DIR=$dir"
}

start() {
    local dir="${1:-${FLUX_PG_DIR:-$DEFAULT_DIR}}" bindir port major
    bindir="$(find_bindir)" || {
        install_server
        bindir="$(find_bindir)" || die "no initdb/pg_ctl found after installing postgresql"
    }
    ensure_user

    if [[ -f "$dir/port" ]] && as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        log "reusing the server running in $dir"
        print_exports "$dir"
        return 0
    fi

    mkdir -p "$dir"
    chmod 700 "$dir"
    [[ $(id -u) -ne 0 ]] || chown "$RUN_AS" "$dir"

    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        rm -rf "$dir/data"
        local locale_args=(--locale=C.UTF-8)
        major="$("$bindir/pg_ctl" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')"
        if ((major >= 15)); then
            locale_args+=(--locale-provider=icu --icu-locale=en-US)
        fi
        log "initdb (PostgreSQL $major) in $dir/data"
        as_owner "$bindir/initdb" -D "$dir/data" -U "$SUPERUSER" --auth=trust \
            --encoding=UTF8 "${locale_args[@]}" >"$dir/initdb.log" 2>&1 ||
            die "initdb failed: $(tail -5 "$dir/initdb.log")"
    fi

    local attempt
    for attempt in 1 2 3; do
        port="$(free_port)"
        # The port is picked before the server binds it; another process may take it between.
        if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t "$START_TIMEOUT" \
            -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
            start >&2; then
            echo "$port" >"$dir/port"
            break
        fi
        log "start on port $port failed (attempt $attempt): $(tail -3 "$dir/server.log" 2>/dev/null)"
        port=""
    done
    [[ -n "$port" ]] || die "could not start PostgreSQL; see $dir/server.log"

    if ! "$bindir/psql" -h 127.0.0.1 -p "$port" -U "$SUPERUSER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'" | grep -q 1; then
        "$bindir/createdb" -h 127.0.0.1 -p "$port" -U "$SUPERUSER" "$DATABASE" >&2
    fi
    log "PostgreSQL is up on 127.0.0.1:$port"
    print_exports "$dir"
}

stop() {
    local dir="${1:-}" bindir
    [[ -n "$dir" ]] || die "usage: postgres.sh stop DIR"
    # Refuse anything that is not a cluster this script made, so a wrong argument deletes nothing.
    [[ -f "$dir/port" && -d "$dir/data" ]] || die "$dir is not a directory made by postgres.sh"
    bindir="$(find_bindir)" || die "no pg_ctl found"
    if as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t "$START_TIMEOUT" stop >&2
    fi
    rm -rf "$dir"
    log "stopped and removed $dir"
}

case "${1:-start}" in
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
*) die "usage: postgres.sh [start [DIR]] | stop DIR" ;;
esac
