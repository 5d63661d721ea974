"""Abuse cases against a release `tollgate serve` with one serving thread, each bounded in count
and time, loopback only, with a small fake provider of its own. Prints one JSON line per case.

  prompt    a 29 MiB prompt under a token limit while /healthz is asked every 5 ms on the same
            (only) serving thread: the slowest /healthz answer while the prompt is counted
  bodies    50 clients each declaring a 30 MiB body and sending it slowly to one key limited to
            one request at a time: peak RSS against max_body_bytes_in_flight
  endless   a provider that streams one event that never ends: the client's stream is cut with an
            error event, peak RSS stays bounded, and CPU returns to idle afterwards

    python3 bench/abuse.py [BIN]        (default target/release/tollgate)
"""
import asyncio, json, os, socket, subprocess, sys, tempfile, threading, time, http.server, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/tollgate")
BUDGET = 64 * 1024 * 1024


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


class Provider(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = b'{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1,"owned_by":"x"}]}'
        self.send_response(200); self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        length = int(self.headers.get("content-length", 0)); raw = self.rfile.read(length)
        if b"endless" in raw[:4096]:
            self.send_response(200); self.send_header("content-type", "text/event-stream"); self.send_header("connection", "close"); self.end_headers()
            self.wfile.write(b'data: {"choices":[{"index":0,"delta":{"content":"')
            try:
                for _ in range(4096):  # at most 256 MiB, 64 KiB at a time
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass
            return
        body = b'{"id":"c","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
        self.send_response(200); self.send_header("content-type", "application/json"); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_secs(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp()
    port = free_port()
    with open(os.path.join(work, "tollgate.toml"), "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\nmax_body_bytes_in_flight = {BUDGET}\n'
                f'[[providers]]\nname = "p"\nbase_url = "http://127.0.0.1:{upstream.server_address[1]}/v1"\nmodels = ["gpt-4o-mini"]\n')
    env = dict(os.environ, TOLLGATE_DATABASE_URL=f"sqlite://{work}/tollgate.db")
    run = lambda *a: subprocess.run([BIN, *a], cwd=work, env=env, check=True, capture_output=True, text=True).stdout
    run("init")
    key = lambda name, *limits: json.loads(run("keys", "create", "--name", name, *limits, "--json"))["value"]
    tpm_key, one_key, plain_key = key("tpm", "--tpm", "100000000"), key("one", "--concurrency", "1"), key("plain")
    server = subprocess.Popen([BIN, "serve", "--workers", "1", "--log-level", "warn"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        server.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        idle_rss = rss_mib(server.pid)

        # prompt: 29 MiB counted while /healthz is polled on the same thread.
        words = ("lorem ipsum dolor sit amet " * (29 * 1024 * 1024 // 27 + 1))[: 29 * 1024 * 1024]
        body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 1, "messages": [{"role": "user", "content": words}]}).encode()
        result = {}
        def big():
            req = urllib.request.Request(base + "/v1/chat/completions", body, {"authorization": f"Bearer {tpm_key}", "content-type": "application/json"})
            t = time.monotonic()
            with urllib.request.urlopen(req, timeout=60) as r:
                result["status"] = r.status
            result["seconds"] = time.monotonic() - t
        thread = threading.Thread(target=big); thread.start()
        worst, polls = 0.0, 0
        conn = socket.create_connection(("127.0.0.1", port))
        while thread.is_alive() and polls < 20000:
            t = time.monotonic()
            conn.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            got = b""
            while b"}" not in got:
                got += conn.recv(4096)
            worst = max(worst, time.monotonic() - t); polls += 1
            time.sleep(0.005)
        thread.join(); conn.close()
        print(json.dumps({"case": "prompt", "prompt_mib": 29, "status": result.get("status"), "request_seconds": round(result.get("seconds", 0), 2),
                          "healthz_polls": polls, "healthz_worst_ms": round(worst * 1000, 1)}))

        # bodies: 50 clients declare 30 MiB each and send slowly to a key allowed one at a time.
        before = rss_mib(server.pid); peak = before
        async def slow(i):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write((f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {one_key}\r\ncontent-type: application/json\r\n"
                     f"content-length: {30 * 1024 * 1024}\r\n\r\n").encode())
            status = None
            try:
                for _ in range(40):  # up to 10 MiB each, 256 KiB every 100 ms
                    w.write(b" " * 262144); await w.drain()
                    if status is None:
                        try:
                            line = await asyncio.wait_for(r.readline(), 0.1)
                            status = int(line.split()[1]) if line else status
                        except asyncio.TimeoutError:
                            pass
            except (ConnectionError, OSError):
                pass
            w.close()
            return status
        async def bodies():
            nonlocal peak
            tasks = [asyncio.create_task(slow(i)) for i in range(50)]
            while not all(t.done() for t in tasks):
                peak = max(peak, rss_mib(server.pid)); await asyncio.sleep(0.05)
            return [t.result() for t in tasks]
        statuses = asyncio.run(bodies())
        print(json.dumps({"case": "bodies", "clients": 50, "declared_mib": 30, "refused_429": statuses.count(429),
                          "budget_mib": BUDGET // 2**20, "rss_before_mib": round(before, 1), "rss_peak_mib": round(peak, 1)}))

        # endless: one event that never ends.
        before = rss_mib(server.pid); peak = before
        req = urllib.request.Request(base + "/v1/chat/completions", json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "endless please"}]}).encode(),
                                     {"authorization": f"Bearer {plain_key}", "content-type": "application/json"})
        done = {}
        def endless():
            t = time.monotonic()
            with urllib.request.urlopen(req, timeout=60) as r:
                done["text"] = r.read().decode(errors="replace")
            done["seconds"] = time.monotonic() - t
        thread = threading.Thread(target=endless); thread.start()
        while thread.is_alive():
            peak = max(peak, rss_mib(server.pid)); time.sleep(0.02)
        thread.join()
        c0 = cpu_secs(server.pid); time.sleep(1.0); idle_cpu = cpu_secs(server.pid) - c0
        print(json.dumps({"case": "endless", "cut": "stream_event_too_large" in done.get("text", ""), "seconds": round(done.get("seconds", 0), 2),
                          "rss_before_mib": round(before, 1), "rss_peak_mib": round(peak, 1), "cpu_share_after": round(idle_cpu, 3),
                          "idle_rss_at_start_mib": round(idle_rss, 1)}))
    finally:
        server.terminate(); server.wait(10); upstream.shutdown()


main()
