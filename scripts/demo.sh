#!/usr/bin/env bash
# Builds everything and runs the whole flow against a local IT Glue simulator with sample data:
# test, connect, status, sync organizations, sync configurations, and what could not be placed.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-wasip2 >/dev/null
fi
echo "==> Building the host, the IT Glue connector component and the simulator (release)"
cargo build --release --locked -p scopable-host -p scopable-tests --bin scopable-host --bin itglue-sim

# Cargo builds where CARGO_TARGET_DIR says, when it is set.
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/scopable-demo.XXXXXX")
key="demo-key-$(date +%s)"
"$bin/itglue-sim" --port 0 --key "$key" --dataset sample >"$work/sim.out" 2>"$work/sim.err" &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
    grep -q '^listening on ' "$work/sim.out" 2>/dev/null && break
    sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/sim.out")
[ -n "$url" ] || { echo "the simulator did not start: $(cat "$work/sim.err")" >&2; exit 1; }

export SCOPABLE_DB="$work/scopable.db"
host() { echo; echo "\$ scopable-host $*"; "$bin/scopable-host" "$@"; }

echo "==> Simulator at $url; database $SCOPABLE_DB"
"$bin/itglue-sim" --dataset sample --write-csv "$work" 2>/dev/null
host import clients "$work/clients.csv"
host import configurations "$work/configurations.csv"
echo; echo "\$ scopable-host itglue test --endpoint $url   (a wrong key first)"
ITGLUE_API_KEY="not-the-key" "$bin/scopable-host" itglue test --endpoint "$url" || echo "(exit status $?)"
echo; echo "\$ scopable-host itglue test --endpoint $url   (the key, with stray spaces, on stdin)"
printf '  %s  \n' "$key" | "$bin/scopable-host" itglue test --endpoint "$url"
echo; echo "\$ ITGLUE_API_KEY=... scopable-host itglue connect --region us --endpoint $url"
ITGLUE_API_KEY="$key" "$bin/scopable-host" itglue connect --region us --endpoint "$url"
host itglue status
host itglue sync organizations
host itglue sync configurations
host itglue unplaced
host itglue status

cat <<NEXT

Try next (the simulator stops when this script ends; these work on the database above):
  export SCOPABLE_DB=$SCOPABLE_DB
  $bin/scopable-host itglue links
  $bin/scopable-host itglue unplaced --json
  $bin/scopable-host itglue link organization 3100112 112     # match by hand
  $bin/scopable-host itglue activity
  $bin/scopable-host audit $target/wasm/wasm32-wasip2/release/scopable_itglue.wasm
NEXT
