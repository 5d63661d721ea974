#!/usr/bin/env bash
# Resident memory of `tollgate serve` with N keys (default: a few, then 100,000), read from
# /proc after start and after one authenticated request per key class.
#   bench/memory.sh [N ...]        e.g. bench/memory.sh 3 100000
# Needs a release build (cargo build --release --bin tollgate). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TOLLGATE_BIN:-$PWD/target/release/tollgate}
[ -x "$BIN" ] || { echo "build first: cargo build --release --bin tollgate" >&2; exit 1; }
counts=("$@"); [ ${#counts[@]} -gt 0 ] || counts=(3 100000)
rss() { awk -v f="$2" '$1 == f":" {print int($2 / 1024 * 10) / 10}' "/proc/$1/status"; }
for n in "${counts[@]}"; do
  dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
  export TOLLGATE_DATABASE_URL="sqlite://$dir/tollgate.db" OPENAI_API_KEY=sk-upstream-unused OPENAI_BASE_URL=http://127.0.0.1:9/v1
  (cd "$dir" && "$BIN" init >/dev/null 2>&1)
  t0=$(date +%s.%N)
  key=$(cd "$dir" && "$BIN" dev seed-keys "$n" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["first_key"])')
  t1=$(date +%s.%N)
  (cd "$dir" && exec "$BIN" serve --listen 127.0.0.1:0 >"$dir/out" 2>"$dir/err") & pid=$!
  for _ in $(seq 1 600); do grep -q "listening on" "$dir/out" 2>/dev/null && break; sleep 0.05; done
  url=$(sed -n 's/^Tollgate listening on //p' "$dir/out")
  [ -n "$url" ] || { cat "$dir/err" >&2; exit 1; }
  start_rss=$(rss $pid VmRSS); start_anon=$(rss $pid RssAnon); start_file=$(rss $pid RssFile)
  code=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/models" -H "authorization: Bearer $key")
  for _ in $(seq 1 20); do curl -s -o /dev/null "$url/v1/models" -H "authorization: Bearer $key"; done
  after_rss=$(rss $pid VmRSS); peak=$(rss $pid VmHWM)
  kill -TERM $pid; wait $pid || true
  printf '{"keys": %d, "seed_secs": %.1f, "auth_status": %s, "rss_mib": %s, "anon_mib": %s, "file_mib": %s, "rss_after_requests_mib": %s, "peak_mib": %s}\n' \
    "$n" "$(echo "$t1 - $t0" | bc)" "$code" "$start_rss" "$start_anon" "$start_file" "$after_rss" "$peak"
  rm -rf "$dir"; trap - EXIT
done
