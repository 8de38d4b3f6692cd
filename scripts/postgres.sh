# Sourced by scripts/test.sh: a throwaway PostgreSQL cluster for the tests.
#
# Installs Debian's postgresql when it is missing (as root), makes a cluster in a temporary
# folder owned by an unprivileged user (PostgreSQL refuses to run as root), starts it on a free
# port of 127.0.0.1 with trust authentication for that address only, and exports its URL as
# SCOPABLE_TEST_POSTGRES. `postgres_stop` stops it and removes the folder.

postgres_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
        fi
    done | sort -V | tail -n 1
}

postgres_start() {
    local bin
    bin=$(postgres_bin)
    if [ -z "$bin" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "installing postgresql for the store's tests" >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
            bin=$(postgres_bin)
        fi
    fi
    if [ -z "$bin" ]; then
        echo "the store's tests need PostgreSQL: apt-get install postgresql (as root)" >&2
        return 1
    fi
    PG_DIR=$(mktemp -d)
    local run_as=()
    if [ "$(id -u)" = 0 ]; then
        # An unprivileged user owns the cluster.
        chown nobody "$PG_DIR"
        chmod 0700 "$PG_DIR"
        run_as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
    fi
    # A free port: one nothing answers on, from the ephemeral range.
    PG_PORT=
    local candidate
    for _ in $(seq 1 50); do
        candidate=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
            PG_PORT=$candidate
            break
        fi
    done
    if [ -z "$PG_PORT" ]; then
        echo "no free port found for the test PostgreSQL" >&2
        return 1
    fi
    "${run_as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U scopable --auth=trust -E UTF8 \
        --no-instructions >"$PG_DIR/initdb.log" 2>&1 || {
        cat "$PG_DIR/initdb.log" >&2
        return 1
    }
    "${run_as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200 -c fsync=off" \
        >/dev/null || {
        cat "$PG_DIR/server.log" >&2
        return 1
    }
    PG_CTL=("${run_as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data")
    export SCOPABLE_TEST_POSTGRES="postgres://scopable@127.0.0.1:$PG_PORT/postgres"
    echo "PostgreSQL for the tests: $SCOPABLE_TEST_POSTGRES" >&2
}

postgres_stop() {
    if [ -n "${PG_DIR:-}" ]; then
        "${PG_CTL[@]}" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
        PG_DIR=
    fi
}
