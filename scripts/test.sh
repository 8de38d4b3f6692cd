#!/usr/bin/env bash
# Runs every test: unit tests of the connector (natively) and of the host, the simulator's
# tests, and the end-to-end tests (real binary, real components, simulator, SQLite).
# Does its own set-up: the wasm32-wasip2 target; the components are built by build scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-wasip2 >/dev/null
fi
cargo test --workspace --locked "$@"
