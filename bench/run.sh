#!/usr/bin/env bash
# Load benchmark: the fake upstream direct, nginx proxy_pass in front of it, and Tollgate in
# front of it (auth, routing, metering and usage writes all on), measured in one run with oha.
# All traffic stays on 127.0.0.1; every oha call is bounded in time.
#
#   bench/run.sh            # ~3 minutes; prints a table and writes bench/results/run-<UTC>.json
#   DURATION=20 RATE=1000 CONC=32 ROUNDS=5 bench/run.sh
#   WORKERS=1 bench/run.sh  # Tollgate with one serving thread
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD
ROOT=$(cd .. && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}              # throughput rounds, targets alternating
CONC=${CONC:-32}
RATE=${RATE:-1000}
RATE_CONC=${RATE_CONC:-64}
LOG_LEVEL=${LOG_LEVEL:-warn}
WORKERS=${WORKERS:-}            # Tollgate's --workers; empty: one per core
UPSTREAM=http://127.0.0.1:18480
PROXY=http://127.0.0.1:18481
TOLLGATE_ADDR=127.0.0.1:18482
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
RUN=$BENCH/run
mkdir -p "$RUN/tmp" "$BENCH/results"

need() {
  command -v oha >/dev/null || command -v "$HOME/.cargo/bin/oha" >/dev/null || {
    echo "installing oha (cargo install oha --locked; ~15 min on 2 cores)"; cargo install oha --locked; }
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || {
    echo "installing nginx"; apt-get update -qq && apt-get install -y -qq nginx; }
}
need
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "building tollgate (release)"
(cd "$ROOT" && cargo build --release --locked --quiet)
TOLLGATE=$ROOT/target/release/tollgate

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  [ -f "$RUN/nginx.pid" ] && "$NGINX" -p "$BENCH/" -c "$BENCH/nginx.conf" -s stop 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$NGINX" -p "$BENCH/" -c "$BENCH/nginx.conf" -e "$RUN/nginx-error.log"

# A fresh Tollgate deployment routed to the fake upstream.
DEPLOY=$RUN/tollgate
rm -rf "$DEPLOY" && mkdir -p "$DEPLOY"
cat >"$DEPLOY/tollgate.toml" <<TOML
listen = "$TOLLGATE_ADDR"
[[providers]]
name = "openai"
base_url = "$UPSTREAM/v1"
models = ["gpt-4o-mini"]
TOML
(cd "$DEPLOY" && "$TOLLGATE" init >/dev/null)
KEY=$(cd "$DEPLOY" && "$TOLLGATE" keys create --name bench --format env | sed 's/^export OPENAI_API_KEY=//')
(cd "$DEPLOY" && exec "$TOLLGATE" serve --log-level "$LOG_LEVEL" ${WORKERS:+--workers "$WORKERS"} >"$RUN/tollgate.out" 2>"$RUN/tollgate.err") &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS -o /dev/null "http://$TOLLGATE_ADDR/healthz" 2>/dev/null && break
  sleep 0.1
done

oha_json() { # url outfile args...
  local url=$1 out=$2; shift 2
  timeout -k 5 $((DURATION + 40)) "$OHA" --no-tui --output-format json -t 10s -m POST \
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$BODY" "$@" "$url/v1/chat/completions" >"$out"
}

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW=$RUN/raw-$STAMP
mkdir -p "$RAW"
TARGETS="direct=$UPSTREAM nginx=$PROXY tollgate=http://$TOLLGATE_ADDR"
for target in $TARGETS; do
  name=${target%%=*} url=${target#*=}
  echo "== warm-up: $name ($url)"
  oha_json "$url" "$RAW/$name-warmup.json" -z "${WARMUP}s" -c "$CONC"
done
# Throughput in rounds that alternate the targets: on a shared or throttled machine the speed
# drifts over minutes, and each round compares targets measured seconds apart.
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    name=${target%%=*} url=${target#*=}
    echo "== round $round/$ROUNDS: $name, $CONC connections"
    oha_json "$url" "$RAW/$name-c$CONC-r$round.json" -z "${DURATION}s" -c "$CONC"
  done
done
for target in $TARGETS; do
  name=${target%%=*} url=${target#*=}
  echo "== $name at $RATE req/s"
  sleep 1
  oha_json "$url" "$RAW/$name-rate$RATE.json" -z "${DURATION}s" -c "$RATE_CONC" -q "$RATE" --latency-correction
done

# Every request through Tollgate must have been metered: compare the stored events.
sleep 1
kill -TERM "${pids[0]}" && wait "${pids[0]}" 2>/dev/null || true
pids=()
METERED=$(cd "$DEPLOY" && "$TOLLGATE" usage --by key --json | python3 -c 'import json,sys; print(sum(r["requests"] for r in json.load(sys.stdin)["data"]))')

python3 - "$RAW" "$CONC" "$RATE" "$METERED" "$BENCH/results/run-$STAMP.json" "$LOG_LEVEL" "${WORKERS:-default}" "$ROUNDS" <<'PY'
import json, os, platform, statistics, sys
raw, conc, rate, metered, out, log_level, workers, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7], int(sys.argv[8])
def load(name):
    with open(os.path.join(raw, name)) as f:
        d = json.load(f)
    codes = {str(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    total = d["summary"].get("total") or 1
    return {
        "ok_rps": round(codes.get("200", 0) / total, 1),
        "non_200": sum(v for k, v in codes.items() if k != "200"),
        "errors": sum((d.get("errorDistribution") or {}).values()),
        "p50_ms": round((d["latencyPercentiles"].get("p50") or 0) * 1000, 3),
        "p99_ms": round((d["latencyPercentiles"].get("p99") or 0) * 1000, 3),
        # Requests oha cut off at its deadline still reached the target: count them as sent.
        "requests": sum(codes.values()) + sum((d.get("errorDistribution") or {}).values()),
    }
rows = {}
sent_to_tollgate = 0
completed_by_tollgate = 0
per_round = {}
for name in ("direct", "nginx", "tollgate"):
    cs = [load(f"{name}-c{conc}-r{n}.json") for n in range(1, rounds + 1)]
    r = load(f"{name}-rate{rate}.json")
    per_round[name] = [c["ok_rps"] for c in cs]
    rows[name] = {"rps": statistics.median(per_round[name]), "rps_rounds": per_round[name], "p50": r["p50_ms"], "p99": r["p99_ms"],
                  "non_200": sum(c["non_200"] for c in cs) + r["non_200"], "errors": sum(c["errors"] for c in cs) + r["errors"]}
    if name == "tollgate":
        phases = cs + [r, load("tollgate-warmup.json")]
        sent_to_tollgate = sum(p["requests"] for p in phases)
        completed_by_tollgate = sum(p["requests"] - p["errors"] for p in phases)
ratios = [round(t / max(n, 1), 3) for t, n in zip(per_round["tollgate"], per_round["nginx"])]
result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "concurrency": int(conc), "rate": int(rate),
          "tollgate_log_level": log_level, "tollgate_workers": workers, "targets": rows,
          "rounds": rounds,
          # The median of the rounds' ratios: each round's targets ran seconds apart.
          "tollgate_vs_nginx_throughput": statistics.median(ratios),
          "tollgate_vs_nginx_throughput_rounds": ratios,
          "tollgate_p50_overhead_ms": round(rows["tollgate"]["p50"] - rows["direct"]["p50"], 3),
          "tollgate_p99_overhead_ms": round(rows["tollgate"]["p99"] - rows["direct"]["p99"], 3),
          "nginx_p99_overhead_ms": round(rows["nginx"]["p99"] - rows["direct"]["p99"], 3),
          "tollgate_requests_sent": sent_to_tollgate, "tollgate_requests_completed": completed_by_tollgate,
          "tollgate_usage_events_stored": metered,
          "metering_complete": completed_by_tollgate <= metered <= sent_to_tollgate}
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print(f"\n{'target':<10} {'req/s @c' + conc + ' (median of ' + str(rounds) + ')':>24} {'p50 @' + rate + '/s':>12} {'p99 @' + rate + '/s':>12} {'non-200':>8} {'cut off':>8}")
for name, r in rows.items():
    print(f"{name:<10} {r['rps']:>24.0f} {r['p50']:>10.3f}ms {r['p99']:>10.3f}ms {r['non_200']:>8} {r['errors']:>8}")
print(f"\nTollgate throughput = {result['tollgate_vs_nginx_throughput']:.0%} of nginx proxy_pass (median of the rounds: {', '.join(f'{x:.0%}' for x in ratios)})")
print(f"Tollgate overhead over direct: p50 +{result['tollgate_p50_overhead_ms']:.3f} ms, p99 +{result['tollgate_p99_overhead_ms']:.3f} ms at {rate} req/s (nginx: p99 +{result['nginx_p99_overhead_ms']:.3f} ms)")
ok = "OK" if result["metering_complete"] else "MISMATCH"
print(f"Usage events stored: {metered}; requests completed {completed_by_tollgate}, sent {sent_to_tollgate} ('cut off' = still in flight when oha's time ran out): {ok}")
print(f"written to {out}")
PY
