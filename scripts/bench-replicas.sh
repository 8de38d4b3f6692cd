#!/usr/bin/env bash
# The replicas benchmark (tests/bench/replicas.rs) on a throwaway PostgreSQL server: started
# as scripts/test.sh starts the tests' one, and removed at the end. Settings are the
# benchmark's BENCH_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
trap postgres_stop EXIT
postgres_start
cargo bench -p scopable-host --bench replicas "$@"
