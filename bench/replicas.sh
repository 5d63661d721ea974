#!/usr/bin/env bash
# Load benchmark for running several replicas: what PostgreSQL and Redis cost against one server
# on SQLite, and what a second replica on the same database and Redis brings. In one run:
#
#   single        one `tollgate serve` on SQLite, rate limits counted in the process (no Redis)
#   one-replica   one `tollgate serve` on PostgreSQL with --redis-url: limits checked in Redis
#   two-replicas  two `tollgate serve` on the same PostgreSQL and Redis, on two ports, the load
#                 split over both (two oha at once, each with half the connections; their
#                 200-OK requests/s summed)
#   direct        the fake upstream alone (nginx, bench/nginx.conf), for reference
#
# The key's project has (very high) rpm and tpm limits, so that every request goes through rate
# limiting: in the process for `single`, in Redis for the replicas. Each run gets its own
# PostgreSQL database and Redis key prefix, removed on exit. All traffic stays on 127.0.0.1;
# every oha call is bounded in time; everything the script starts is stopped on exit.
#
#   bench/replicas.sh                       # ~4.5 minutes; prints a table, writes bench/results/replicas-<UTC>.json
#   DURATION=20 ROUNDS=5 bench/replicas.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432 REDIS_URL=redis://127.0.0.1:6379 bench/replicas.sh
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD
ROOT=$(cd .. && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}              # throughput rounds, targets alternating
CONC=${CONC:-32}
RATE=${RATE:-500}
RATE_CONC=${RATE_CONC:-32}
PAUSE=${PAUSE:-2}                # seconds between measurements (usage writes catch up)
LOG_LEVEL=${LOG_LEVEL:-warn}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
UPSTREAM=http://127.0.0.1:18480  # nginx answering every chat completion (bench/nginx.conf)
SINGLE_ADDR=127.0.0.1:18483
REPLICA_A_ADDR=127.0.0.1:18484
REPLICA_B_ADDR=127.0.0.1:18485
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
RUN=$BENCH/run
mkdir -p "$RUN/tmp" "$BENCH/results"

need() {
  command -v oha >/dev/null || command -v "$HOME/.cargo/bin/oha" >/dev/null || {
    echo "installing oha (cargo install oha --locked; ~15 min on 2 cores)"; cargo install oha --locked; }
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || {
    echo "installing nginx"; apt-get update -qq && apt-get install -y -qq nginx; }
  for tool in psql redis-cli curl python3; do
    command -v "$tool" >/dev/null || { echo "replicas.sh needs $tool" >&2; exit 1; }
  done
}
need
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "building tollgate (release)"
(cd "$ROOT" && cargo build --release --locked --quiet)
TOLLGATE=${CARGO_TARGET_DIR:-$ROOT/target}/release/tollgate

# This run's own PostgreSQL database and Redis prefix.
DB=tollgate_bench_$$
DB_URL=$PG_URL/$DB
PREFIX="tollgate-bench-$$:"
REDIS_HOST_PORT=${REDIS_URL#redis://}
REDIS_CLI=(redis-cli -h "${REDIS_HOST_PORT%%:*}" -p "${REDIS_HOST_PORT##*:}")
psql_admin() { psql "$PG_URL/postgres" -v ON_ERROR_STOP=1 -qtAc "$1"; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  [ -f "$RUN/nginx.pid" ] && "$NGINX" -p "$BENCH/" -c "$BENCH/nginx.conf" -s stop 2>/dev/null || true
  wait 2>/dev/null || true
  psql_admin "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null || true
  "${REDIS_CLI[@]}" --scan --pattern "$PREFIX*" 2>/dev/null | xargs -r -n 500 "${REDIS_CLI[@]}" del >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$NGINX" -p "$BENCH/" -c "$BENCH/nginx.conf" -e "$RUN/nginx-error.log"

provider_toml() {
  cat <<TOML
[[providers]]
name = "openai"
base_url = "$UPSTREAM/v1"
models = ["gpt-4o-mini"]
TOML
}
LIMITS=(limits set --project "Default project" --rpm 100000000 --tpm 100000000000)

# `single`: a fresh SQLite deployment; rate limits counted in the process.
SINGLE=$RUN/replicas-single
rm -rf "$SINGLE" && mkdir -p "$SINGLE"
provider_toml >"$SINGLE/tollgate.toml"
(cd "$SINGLE" && "$TOLLGATE" init >/dev/null && "$TOLLGATE" "${LIMITS[@]}" >/dev/null)
KEY_SINGLE=$(cd "$SINGLE" && "$TOLLGATE" keys create --name bench --format env | sed 's/^export OPENAI_API_KEY=//')

# The replicas: one PostgreSQL deployment directory (so both read the same ./tollgate.secret),
# one config file per replica that differs only in its usage spool.
psql_admin "CREATE DATABASE $DB"
PGDEP=$RUN/replicas-pg
rm -rf "$PGDEP" && mkdir -p "$PGDEP"
for name in tollgate a b; do
  {
    provider_toml
    printf '[redis]\nprefix = "%s"\n' "$PREFIX"
    [ "$name" = tollgate ] || printf '[metering]\nspool_dir = "spool-%s"\n' "$name"
  } >"$PGDEP/$name.toml"
done
pgtg() { (cd "$PGDEP" && "$TOLLGATE" --database-url "$DB_URL" "$@"); }
pgtg init >/dev/null
pgtg "${LIMITS[@]}" >/dev/null
KEY_PG=$(pgtg keys create --name bench --format env | sed 's/^export OPENAI_API_KEY=//')

wait_healthy() { # addr
  for _ in $(seq 150); do
    curl -fsS -o /dev/null "http://$1/healthz" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "tollgate at $1 did not come up; see $RUN/replicas-*.err" >&2; exit 1
}
(cd "$SINGLE" && exec "$TOLLGATE" serve --log-level "$LOG_LEVEL" --listen "$SINGLE_ADDR" \
  >"$RUN/replicas-single.out" 2>"$RUN/replicas-single.err") &
pids+=($!); PID_SINGLE=$!
for r in a b; do
  addr=$REPLICA_A_ADDR; [ $r = b ] && addr=$REPLICA_B_ADDR
  (cd "$PGDEP" && exec "$TOLLGATE" --config "$r.toml" --database-url "$DB_URL" --redis-url "$REDIS_URL" \
    serve --log-level "$LOG_LEVEL" --listen "$addr" >"$RUN/replicas-$r.out" 2>"$RUN/replicas-$r.err") &
  pids+=($!)
done
PID_A=${pids[1]} PID_B=${pids[2]}
for addr in $SINGLE_ADDR $REPLICA_A_ADDR $REPLICA_B_ADDR; do wait_healthy "$addr"; done

oha_json() { # url key outfile args...
  local url=$1 key=$2 out=$3; shift 3
  timeout -k 5 $((DURATION + 40)) "$OHA" --no-tui --output-format json -t 10s -m POST \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$BODY" "$@" "$url/v1/chat/completions" >"$out"
}
# One measurement of a target: `two-replicas` runs two oha at once, half the connections each.
measure() { # target outprefix seconds conc [extra oha args...]
  local target=$1 out=$2 secs=$3 conc=$4; shift 4
  case $target in
    direct) oha_json "$UPSTREAM" none "$out.json" -z "${secs}s" -c "$conc" "$@" ;;
    single) oha_json "http://$SINGLE_ADDR" "$KEY_SINGLE" "$out.json" -z "${secs}s" -c "$conc" "$@" ;;
    one-replica) oha_json "http://$REPLICA_A_ADDR" "$KEY_PG" "$out.json" -z "${secs}s" -c "$conc" "$@" ;;
    two-replicas)
      oha_json "http://$REPLICA_A_ADDR" "$KEY_PG" "$out-a.json" -z "${secs}s" -c $((conc / 2)) "$@" &
      local a=$!
      oha_json "http://$REPLICA_B_ADDR" "$KEY_PG" "$out-b.json" -z "${secs}s" -c $((conc - conc / 2)) "$@" &
      local b=$!
      wait "$a"; wait "$b" ;;
  esac
}

# Scripts run on the Redis server (all of Redis, not only this run's: the admission script once
# per request to a replica, plus each replica's heartbeat once a second).
redis_script_calls() {
  "${REDIS_CLI[@]}" info commandstats | tr -d '\r' |
    awk -F'calls=' '/^cmdstat_(eval|evalsha|fcall):/ { split($2, a, ","); n += a[1] } END { print n + 0 }'
}
SCRIPT_CALLS_BEFORE=$(redis_script_calls)

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$RUN/replicas-raw-$STAMP
mkdir -p "$RAW"
TARGETS="single one-replica two-replicas direct"
for target in $TARGETS; do
  echo "== warm-up: $target"
  measure "$target" "$RAW/$target-warmup" "$WARMUP" "$CONC"
  sleep "$PAUSE"
done
# Throughput in rounds that alternate the targets: on a shared or throttled machine the speed
# drifts over minutes, and each round compares targets measured seconds apart.
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    echo "== round $round/$ROUNDS: $target, $CONC connections"
    measure "$target" "$RAW/$target-c$CONC-r$round" "$DURATION" "$CONC"
    sleep "$PAUSE"
  done
done
# Latency at a fixed rate (open loop, corrected for coordinated omission): what Redis (and
# PostgreSQL behind the usage writes) add to a request, one-replica against single.
for target in single one-replica direct; do
  echo "== $target at $RATE req/s"
  measure "$target" "$RAW/$target-rate$RATE" "$DURATION" "$RATE_CONC" -q "$RATE" --latency-correction
  sleep "$PAUSE"
done

# Rate limits went through Redis: the scripts it ran meanwhile. (The counters themselves expire
# as soon as they are full again, within milliseconds at these limits.)
REDIS_SCRIPT_CALLS=$(( $(redis_script_calls) - SCRIPT_CALLS_BEFORE ))

# Stop the servers (they store what their spools hold first), then count the usage events.
stop() { # pid name
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then echo "warning: $2 still running 60 s after SIGTERM; killed" >&2; kill -KILL "$1"; fi
  wait "$1" 2>/dev/null || true
}
stop "$PID_SINGLE" single; stop "$PID_A" replica-a; stop "$PID_B" replica-b
pids=()
sum_requests='import json,sys; print(sum(r["requests"] for r in json.load(sys.stdin)["data"]))'
METERED_SINGLE=$(cd "$SINGLE" && "$TOLLGATE" usage --by key --json | python3 -c "$sum_requests")
METERED_PG=$(psql "$DB_URL" -qtAc "SELECT count(*) FROM usage_events")
METERED_PG_CLI=$(pgtg usage --by key --json | python3 -c "$sum_requests")
# Anything the servers logged (at LOG_LEVEL or above; logs go to stderr).
WARNINGS=$RAW/tollgate-warnings.txt
for name in single a b; do sed "s/^/$name: /" "$RUN/replicas-$name.err"; done >"$WARNINGS"

python3 - "$RAW" "$CONC" "$RATE" "$RATE_CONC" "$ROUNDS" "$METERED_SINGLE" "$METERED_PG" "$METERED_PG_CLI" "$REDIS_SCRIPT_CALLS" \
  "$WARNINGS" "$LOG_LEVEL" "$BENCH/results/replicas-$STAMP.json" <<'PY'
import json, os, platform, statistics, sys
(raw, conc, rate, rate_conc, rounds, metered_single, metered_pg, metered_pg_cli, redis_calls, warnings_file,
 log_level, out) = sys.argv[1:]
rounds, metered_single, metered_pg, metered_pg_cli, redis_calls = map(int, (rounds, metered_single, metered_pg, metered_pg_cli, redis_calls))

def load_one(path):
    with open(path) as f:
        d = json.load(f)
    codes = {str(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    errors = sum((d.get("errorDistribution") or {}).values())
    total = d["summary"].get("total") or 1
    lat = d.get("latencyPercentiles") or {}
    return {
        "ok_rps": codes.get("200", 0) / total,
        "non_200": sum(v for k, v in codes.items() if k != "200"),
        "errors": errors,
        "p50_ms": (lat.get("p50") or 0) * 1000,
        "p99_ms": (lat.get("p99") or 0) * 1000,
        # Requests oha cut off at its deadline still reached the target: count them as sent.
        "sent": sum(codes.values()) + errors,
        "completed": sum(codes.values()),
    }

def load(name):
    """One measurement; `two-replicas` sums its two oha processes' figures."""
    parts = [os.path.join(raw, f"{name}.json")]
    if not os.path.exists(parts[0]):
        parts = [os.path.join(raw, f"{name}-{side}.json") for side in "ab"]
    ms = [load_one(p) for p in parts]
    s = {k: sum(m[k] for m in ms) for k in ("ok_rps", "non_200", "errors", "sent", "completed")}
    s["p50_ms"], s["p99_ms"] = ms[0]["p50_ms"], ms[0]["p99_ms"]
    s["per_process_ok_rps"] = [round(m["ok_rps"], 1) for m in ms]
    return s

targets = ["single", "one-replica", "two-replicas", "direct"]
rows, phases = {}, {}
for name in targets:
    cs = [load(f"{name}-c{conc}-r{n}") for n in range(1, rounds + 1)]
    ph = cs + [load(f"{name}-warmup")]
    row = {"rps": round(statistics.median(c["ok_rps"] for c in cs), 1),
           "rps_rounds": [round(c["ok_rps"], 1) for c in cs]}
    if name == "two-replicas":
        row["rps_rounds_per_replica"] = [c["per_process_ok_rps"] for c in cs]
    if os.path.exists(os.path.join(raw, f"{name}-rate{rate}.json")):
        r = load(f"{name}-rate{rate}")
        ph.append(r)
        row["p50_ms"], row["p99_ms"] = round(r["p50_ms"], 3), round(r["p99_ms"], 3)
        row["rate_ok_rps"] = round(r["ok_rps"], 1)
    row["non_200"] = sum(p["non_200"] for p in ph)
    row["cut_off"] = sum(p["errors"] for p in ph)
    rows[name], phases[name] = row, ph

def sent(*names): return sum(p["sent"] for n in names for p in phases[n])
def completed(*names): return sum(p["completed"] for n in names for p in phases[n])
metering = {
    "single": {"sent": sent("single"), "completed": completed("single"), "usage_events_stored": metered_single},
    "postgres": {"sent": sent("one-replica", "two-replicas"), "completed": completed("one-replica", "two-replicas"),
                 "usage_events_stored": metered_pg, "usage_by_key_requests": metered_pg_cli},
}
for m in metering.values():
    m["complete"] = m["completed"] <= m["usage_events_stored"] <= m["sent"]
with open(warnings_file) as f:
    warnings = [line.rstrip("\n") for line in f if line.strip()]
result = {
    "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    "concurrency": int(conc), "rate": int(rate), "rate_concurrency": int(rate_conc), "rounds": rounds,
    "tollgate_log_level": log_level, "targets": rows,
    "two_vs_one_replica_throughput": round(rows["two-replicas"]["rps"] / max(rows["one-replica"]["rps"], 1), 3),
    "one_replica_vs_single_throughput": round(rows["one-replica"]["rps"] / max(rows["single"]["rps"], 1), 3),
    "redis_added_p50_ms": round(rows["one-replica"]["p50_ms"] - rows["single"]["p50_ms"], 3),
    "redis_added_p99_ms": round(rows["one-replica"]["p99_ms"] - rows["single"]["p99_ms"], 3),
    "redis_script_calls": redis_calls,
    "metering": metering,
    "tollgate_log_lines": len(warnings), "tollgate_log_sample": warnings[:20],
}
with open(out, "w") as f:
    json.dump(result, f, indent=2)

print(f"\n{'target':<13} {'req/s @c' + conc + ' (median of ' + str(rounds) + ')':>24} {'rounds':>26} {'p50 @' + rate + '/s':>12} {'p99 @' + rate + '/s':>12} {'non-200':>8} {'cut off':>8}")
for name, r in rows.items():
    p50 = f"{r['p50_ms']:.3f}ms" if "p50_ms" in r else "-"
    p99 = f"{r['p99_ms']:.3f}ms" if "p99_ms" in r else "-"
    rr = ", ".join(f"{x:.0f}" for x in r["rps_rounds"])
    print(f"{name:<13} {r['rps']:>24.0f} {rr:>26} {p50:>12} {p99:>12} {r['non_200']:>8} {r['cut_off']:>8}")
print(f"\ntwo-replicas / one-replica throughput: {result['two_vs_one_replica_throughput']:.2f}; one-replica / single: {result['one_replica_vs_single_throughput']:.2f}")
print(f"added by Redis + PostgreSQL (one-replica - single) at {rate} req/s: p50 {result['redis_added_p50_ms']:+.3f} ms, p99 {result['redis_added_p99_ms']:+.3f} ms")
pg_sent = metering["postgres"]["sent"]
print(f"Redis scripts run: {redis_calls} for {pg_sent} requests sent to the replicas (one admission a request, plus heartbeats)")
for name, m in metering.items():
    ok = "OK" if m["complete"] else "MISMATCH"
    print(f"usage events stored ({name}): {m['usage_events_stored']}; completed {m['completed']}, sent {m['sent']}: {ok}")
print(f"tollgate log lines at {log_level} or above: {len(warnings)}" + (f" (first: {warnings[0]})" if warnings else ""))
print(f"written to {out}")
PY
