#!/usr/bin/env bash
# 5,000 concurrent streaming chat completions (20 events, 500 ms apart) through nginx
# (proxy_pass, proxy_buffering off) and through Tollgate, one after the other in one run, in
# front of the same streaming fake provider (bench/stream_upstream.py). For each: streams
# completed, first-event latency p50/p99, peak RSS of the proxy's processes (sampled every
# 100 ms from /proc) and over its idle RSS, and CPU per streamed event (utime+stime / events).
#   bench/streams.sh                 # N=5000 EVENTS=20 GAP=0.5
# Loopback only; every client run is bounded by TIMEOUT seconds.
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD ROOT=$(cd .. && pwd)
N=${N:-5000} EVENTS=${EVENTS:-20} GAP=${GAP:-0.5} TIMEOUT=${TIMEOUT:-90}
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "installing nginx (Debian)"; apt-get install -y -qq nginx >/dev/null; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
RUN=$BENCH/run/streams; rm -rf "$RUN"; mkdir -p "$RUN/tmp"
(cd "$ROOT" && cargo build --release --locked --quiet --bin tollgate)
BIN=$ROOT/target/release/tollgate
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  "$NGINX" -p "$RUN/" -c "$RUN/nginx.conf" -s stop 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
python3 "$BENCH/stream_upstream.py" 18490 "$EVENTS" "$GAP" & pids+=($!)
cat >"$RUN/nginx.conf" <<CONF
worker_processes 2;
pid nginx.pid;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
    upstream provider { server 127.0.0.1:18490; keepalive 1024; }
    server {
        listen 127.0.0.1:18491 backlog=8192;
        location / {
            proxy_pass http://provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
CONF
"$NGINX" -p "$RUN/" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log"
mkdir -p "$RUN/tollgate"
cat >"$RUN/tollgate/tollgate.toml" <<TOML
listen = "127.0.0.1:18492"
[connections]
max = 12000
[[providers]]
name = "openai"
base_url = "http://127.0.0.1:18490/v1"
models = ["gpt-4o-mini"]
TOML
(cd "$RUN/tollgate" && "$BIN" init >/dev/null)
KEY=$(cd "$RUN/tollgate" && "$BIN" keys create --name bench --format env | sed 's/^export OPENAI_API_KEY=//' | tr -d "'\"")
(cd "$RUN/tollgate" && exec "$BIN" serve --log-level warn >"$RUN/tollgate.out" 2>"$RUN/tollgate.err") & TPID=$!; pids+=($TPID)
for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:18492/healthz 2>/dev/null && break; sleep 0.1; done

tree() { # pids of a process and its children
  echo "$1"; pgrep -P "$1" || true
}
rss_kib() { local t=0; for p in "$@"; do t=$((t + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $t; }
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
measure() { # name url key pids...
  local name=$1 url=$2 key=$3; shift 3
  python3 "$BENCH/stream_client.py" "$url" "$key" 20 30 >/dev/null   # warm-up
  local idle; idle=$(rss_kib "$@"); local cpu0; cpu0=$(cpu_ticks "$@")
  python3 "$BENCH/stream_client.py" "$url" "$key" "$N" "$TIMEOUT" >"$RUN/$name.json" & local client=$!
  local peak=$idle
  while kill -0 $client 2>/dev/null; do
    local now; now=$(rss_kib "$@"); (( now > peak )) && peak=$now; sleep 0.1
  done
  wait $client
  local cpu1; cpu1=$(cpu_ticks "$@")
  python3 - "$RUN/$name.json" "$name" "$idle" "$peak" "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
path, name, idle, peak, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
r = json.load(open(path))
r.update({"target": name, "idle_rss_mib": round(idle / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
          "kib_per_stream": round((peak - idle) / max(r["completed"], 1), 1),
          "cpu_us_per_event": round(ticks / hz * 1e6 / max(r["events"], 1), 1)})
json.dump(r, open(path, "w"))
print(json.dumps(r))
PY
}
NG_MASTER=$(cat "$RUN/nginx.pid")
measure nginx http://127.0.0.1:18491 none $(tree "$NG_MASTER")
measure tollgate http://127.0.0.1:18492 "$KEY" "$TPID"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
python3 - "$RUN/nginx.json" "$RUN/tollgate.json" "$BENCH/results/streams-$STAMP.json" <<'PY'
import json, sys
n, t = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
res = {"nginx": n, "tollgate": t,
       "peak_rss_ratio": round(t["peak_rss_mib"] / n["peak_rss_mib"], 2),
       "first_event_p50_delta_ms": round(t["first_event_p50_ms"] - n["first_event_p50_ms"], 1),
       "cpu_per_event_ratio": round(t["cpu_us_per_event"] / n["cpu_us_per_event"], 2)}
json.dump(res, open(sys.argv[3], "w"), indent=2)
print(f"completed: nginx {n['completed']}/{n['streams']}, tollgate {t['completed']}/{t['streams']}")
print(f"peak RSS: nginx {n['peak_rss_mib']} MiB ({n['kib_per_stream']} KiB/stream), tollgate {t['peak_rss_mib']} MiB ({t['kib_per_stream']} KiB/stream): {res['peak_rss_ratio']}x")
print(f"first event p50/p99: nginx {n['first_event_p50_ms']}/{n['first_event_p99_ms']} ms, tollgate {t['first_event_p50_ms']}/{t['first_event_p99_ms']} ms (p50 {res['first_event_p50_delta_ms']:+} ms)")
print(f"CPU per event: nginx {n['cpu_us_per_event']} us, tollgate {t['cpu_us_per_event']} us: {res['cpu_per_event_ratio']}x")
print("written to", sys.argv[3])
PY
