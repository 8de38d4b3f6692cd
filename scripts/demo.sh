#!/usr/bin/env bash
# Builds everything and runs the whole flow against a local IT Glue simulator with sample data:
# test, connect, status, sync organizations, sync configurations, and what could not be placed.
# With --serve, it then runs the integration runtime on 127.0.0.1:8080 (or --listen ADDR) for a
# fresh account with the same records: open the page, sign in with the printed token, and
# follow the setup guide with the printed simulator key.
set -euo pipefail
serve=no
listen=127.0.0.1:8080
while [ $# -gt 0 ]; do
    case "$1" in
        --serve) serve=yes ;;
        --listen) listen="$2"; shift ;;
        *) echo "usage: $0 [--serve [--listen ADDR]]" >&2; exit 2 ;;
    esac
    shift
done
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

if [ "$serve" = yes ]; then
    "$bin/scopable-host" accounts add demo --name "Demo MSP" >/dev/null
    "$bin/scopable-host" accounts enable demo itglue >/dev/null
    "$bin/scopable-host" --account demo import clients "$work/clients.csv" >/dev/null
    "$bin/scopable-host" --account demo import configurations "$work/configurations.csv" >/dev/null
    token=$("$bin/scopable-host" accounts token demo --role admin)
    cat <<SERVE

==> The integration runtime: open http://$listen in a browser.
    Sign in with the access token:  $token
    On the Connect IT Glue card, test and connect with the key:  $key
    (any region: every account's calls go to the simulator, as --endpoint says)
    Ctrl-C stops the server and the simulator.

SERVE
    "$bin/scopable-host" serve --listen "$listen" --endpoint "itglue=$url" || true
    exit 0
fi

cat <<NEXT

Try next (the simulator stops when this script ends; these work on the database above):
  export SCOPABLE_DB=$SCOPABLE_DB
  $bin/scopable-host itglue links
  $bin/scopable-host itglue unplaced --json
  $bin/scopable-host itglue link organization 3100112 112     # match by hand
  $bin/scopable-host itglue activity
  $bin/scopable-host audit $target/wasm/wasm32-wasip2/release/scopable_itglue.wasm
NEXT
