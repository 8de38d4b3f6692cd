#!/usr/bin/env bash
# Runs every test: unit tests of the connector (natively) and of the host, the simulator's
# tests, and the end-to-end tests (real binary, real components, simulator, SQLite).
# Does its own set-up: the wasm32-wasip2 target, chromium with chromium-driver for the
# browser tests, and a throwaway PostgreSQL cluster for the store's tests (scripts/postgres.sh:
# installed when missing, run as an unprivileged user on a free port in a temporary folder,
# stopped at the end); the components are built by build scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-wasip2 >/dev/null
fi
# The browser tests drive Debian's chromium through chromedriver: installed when missing.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing chromium and chromium-driver for the browser tests" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "the browser tests need chromium and chromedriver: apt-get install chromium chromium-driver (as root)" >&2
        exit 1
    fi
fi
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
log=$(mktemp)
trap 'rm -f "$log"; postgres_stop' EXIT
postgres_start
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one result line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
