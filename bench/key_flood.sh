#!/usr/bin/env bash
# Valid keys' latency alone and under a flood of forged keys with valid checksums (see
# key_flood.py). Builds the release binary, starts `tollgate serve --demo` on 127.0.0.1:18490 in
# bench/run/flood, runs the load, stops the server, and prints the server's warnings about
# unknown keys refused over the lookup cap (with the lookups it made).
#
#   bench/key_flood.sh                      # ~30 s after the build
#   RATE=1000 DURATION=20 LOOKUPS=50 bench/key_flood.sh
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD
ROOT=$(cd .. && pwd)
RATE=${RATE:-500}
DURATION=${DURATION:-10}
LOOKUPS=${LOOKUPS:-50}
FLOOD=${FLOOD:-16}
ADDR=127.0.0.1:18490
DEPLOY=$BENCH/run/flood
mkdir -p "$BENCH/results"

(cd "$ROOT" && cargo build --release --locked --quiet)
TOLLGATE=$ROOT/target/release/tollgate
rm -rf "$DEPLOY" && mkdir -p "$DEPLOY"
printf 'listen = "%s"\nkey_lookups_per_second = %s\n' "$ADDR" "$LOOKUPS" >"$DEPLOY/tollgate.toml"
(cd "$DEPLOY" && "$TOLLGATE" init >/dev/null)
KEY=$(cd "$DEPLOY" && "$TOLLGATE" keys create --name bench --format env | sed 's/^export OPENAI_API_KEY=//')
(cd "$DEPLOY" && exec "$TOLLGATE" serve --demo --log-level warn >"$DEPLOY/out.log" 2>"$DEPLOY/err.log") &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://$ADDR/healthz" 2>/dev/null && break
  sleep 0.1
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BENCH/results/key-flood-$STAMP.json
timeout -k 5 $((DURATION * 2 + 60)) python3 "$BENCH/key_flood.py" --url "http://$ADDR" --key "$KEY" \
  --rate "$RATE" --duration "$DURATION" --flood-connections "$FLOOD" --out "$OUT"
kill -TERM $PID; wait $PID 2>/dev/null || true
echo "cap: $LOOKUPS store lookups a second of unknown keys; the server's warnings about the excess:"
grep 'faster than the lookup rate' "$DEPLOY/err.log" || echo "(none)"
echo "results: $OUT"
