#!/usr/bin/env bash
# CPU per proxied request and throughput, in one run, rounds alternating, of:
#   nginx      nginx proxy_pass (../shared/bench/nginx-split/proxy.conf, its own processes)
#   tollgate   tollgate serve (release build)
# (On 2026-12-01 it also ran hyper's client beside the hand-written one that ce405b8 still had: the
# A/B that replaced it; see bench/README.md.) Both in front of the same fake upstream (../shared/bench/nginx-split/upstream.conf, separate
# nginx processes). CPU per request is each target's own processes' utime+stime from /proc over
# a round, divided by the requests it answered (200s; wrk is the load). Loopback only; every
# wrk call is time-bounded.
#   bench/proxy-cpu.sh                  # ROUNDS=4 DURATION=8 CONC=32
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD ROOT=$(cd .. && pwd)
SPLIT=${SPLIT:-$ROOT/../shared/bench/nginx-split}
[ -f "$SPLIT/proxy.conf" ] || { echo "skipped: $SPLIT (the shared nginx-split configs) is not here"; exit 0; }
ROUNDS=${ROUNDS:-4} DURATION=${DURATION:-8} CONC=${CONC:-32}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v wrk >/dev/null && [ -x "$NGINX" ] || { echo "installing nginx and wrk (Debian)"; apt-get install -y -qq nginx wrk >/dev/null; }
RUN=$BENCH/run/proxy-cpu; rm -rf "$RUN"; mkdir -p "$RUN/run/tmp/body" "$RUN/run/tmp/proxy"
(cd "$ROOT" && cargo build --release --locked --quiet --bin tollgate)
BIN=$ROOT/target/release/tollgate
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}'
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for c in proxy upstream; do "$NGINX" -p "$RUN/" -c "$SPLIT/$c.conf" -s stop 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
"$NGINX" -p "$RUN/" -c "$SPLIT/upstream.conf" -e "$RUN/up-error.log"
"$NGINX" -p "$RUN/" -c "$SPLIT/proxy.conf" -e "$RUN/proxy-error.log"
start_tollgate() { # name port [env...]
  local name=$1 port=$2; shift 2
  local dir=$RUN/$name; mkdir -p "$dir"
  printf 'listen = "127.0.0.1:%s"\n[[providers]]\nname = "openai"\nbase_url = "http://127.0.0.1:18480/v1"\nmodels = ["gpt-4o-mini"]\n' "$port" >"$dir/tollgate.toml"
  (cd "$dir" && "$BIN" init >/dev/null)
  (cd "$dir" && "$BIN" keys create --name bench --format env | sed 's/^export OPENAI_API_KEY=//' | tr -d "'\"") >"$dir/key"
  (cd "$dir" && exec env "$@" "$BIN" serve --log-level warn >"$dir/out" 2>"$dir/err") & pids+=($!)
  echo $! >"$dir/pid"
  for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && return; sleep 0.1; done
  echo "$name did not start: $(cat "$dir/err")"; exit 1
}
start_tollgate tollgate 18482 RUST_LOG_STYLE=never
cpu_of() { # pids... -> clock ticks (utime+stime) summed
  local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t
}
nginx_pids() { pgrep -P "$(cat "$RUN/run/nginx-proxy.pid")" | tr '\n' ' '; cat "$RUN/run/nginx-proxy.pid"; }
TARGETS="nginx=http://127.0.0.1:18481 tollgate=http://127.0.0.1:18482"
key_of() { case $1 in nginx) echo none;; *) cat "$RUN/$1/key";; esac; }
pids_of() { case $1 in nginx) nginx_pids;; *) cat "$RUN/$1/pid";; esac; }
load() { # name url seconds out: wrk's report, with the POST written by a Lua script
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer %s"\n' \
    "'$BODY'" "$(key_of "$1")" >"$RUN/$1.lua"
  timeout -k 5 $(($3 + 30)) wrk -t 2 -c "$CONC" -d "${3}s" --timeout 10s -s "$RUN/$1.lua" "$2/v1/chat/completions" >"$4"
}
for t in $TARGETS; do load "${t%%=*}" "${t#*=}" 3 "$RUN/warm-${t%%=*}.txt"; done
TICK=$(getconf CLK_TCK)
for r in $(seq "$ROUNDS"); do
  for t in $TARGETS; do
    name=${t%%=*}; ps=$(pids_of "$name")
    before=$(cpu_of $ps); load "$name" "${t#*=}" "$DURATION" "$RUN/$name-r$r.txt"; after=$(cpu_of $ps)
    echo "$name $r $((after - before))" >>"$RUN/cpu.txt"
    echo "== round $r: $name done"
  done
done
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
python3 - "$RUN" "$ROUNDS" "$TICK" "$BENCH/results/proxy-cpu-$STAMP.json" <<'PY'
import json, statistics, sys
run, rounds, tick, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cpu = {}
for line in open(f"{run}/cpu.txt"):
    name, r, ticks = line.split(); cpu[(name, int(r))] = int(ticks)
rows = {}
for name in ("nginx", "tollgate"):
    rps, us = [], []
    for r in range(1, rounds + 1):
        text = open(f"{run}/{name}-r{r}.txt").read()
        import re
        total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", text).group(1))
        secs = re.search(r"requests in ([\d.]+)(\w+)", text)
        secs = float(secs.group(1)) * (60 if secs.group(2) == "m" else 0.001 if secs.group(2) == "ms" else 1)
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        ok = total - (int(bad.group(1)) if bad else 0)
        rps.append(ok / secs)
        us.append(cpu[(name, r)] / tick * 1e6 / max(ok, 1))
    rows[name] = {"rps_rounds": [round(x) for x in rps], "cpu_us_rounds": [round(x, 1) for x in us],
                  "rps": round(statistics.median(rps)), "cpu_us_per_request": round(statistics.median(us), 1)}
ratio = lambda a, b, k: round(statistics.median([x / y for x, y in zip(rows[a][k], rows[b][k])]), 3)
res = {"rounds": rounds, "targets": rows,
       "tollgate_cpu_vs_nginx": ratio("tollgate", "nginx", "cpu_us_rounds"),
       "tollgate_vs_nginx_throughput": ratio("tollgate", "nginx", "rps_rounds")}
json.dump(res, open(out, "w"), indent=2)
for n, r in rows.items():
    print(f"{n:<9} {r['rps']:>7} req/s  {r['cpu_us_per_request']:>6} us CPU/request   rounds {r['rps_rounds']} {r['cpu_us_rounds']}")
print(f"CPU per request: tollgate {res['tollgate_cpu_vs_nginx']}x nginx's; throughput {res['tollgate_vs_nginx_throughput']:.0%} of nginx's")
print("written to", out)
PY
