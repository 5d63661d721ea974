"""kill -9 under load: a release `tollgate serve` (demo provider) answers 32 keep-alive clients
(half plain requests, half streams read to `data: [DONE]` and hung up on, as the SDKs do) until
SECONDS have passed, is killed with SIGKILL, and started again; then every request that got a
complete 200 must have exactly one usage event (read from the SQLite file). Loopback only.

    python3 bench/kill9.py [SECONDS] [BIN]
"""
import asyncio, json, os, signal, sqlite3, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 4
BIN = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target/release/tollgate")
work = tempfile.mkdtemp()
env = dict(os.environ, TOLLGATE_DATABASE_URL=f"sqlite://{work}/tollgate.db")
with open(os.path.join(work, "tollgate.toml"), "w") as f:
    f.write('[[providers]]\nname = "sim"\ntype = "mock"\nstream_delay_ms = 0\nmodels = ["gpt-4o-mini"]\n')
subprocess.run([BIN, "init"], cwd=work, env=env, check=True, capture_output=True)
key = json.loads(subprocess.run([BIN, "keys", "create", "--name", "load", "--json"], cwd=work, env=env, check=True, capture_output=True, text=True).stdout)["value"]


def start():
    p = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--log-level", "info"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    return p, line.strip().rsplit("//", 1)[1]


async def client(addr, stream, answered, stop):
    host, port = addr.split(":")
    body = json.dumps({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hello there"}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body
    while not stop.is_set():
        try:
            r, w = await asyncio.open_connection(host, int(port))
        except OSError:
            return
        try:
            while not stop.is_set():
                w.write(request); await w.drain()
                head = await r.readuntil(b"\r\n\r\n")
                rid = next((l.split(b":", 1)[1].strip().decode() for l in head.split(b"\r\n") if l.lower().startswith(b"x-request-id:")), None)
                ok = head.startswith(b"HTTP/1.1 200")
                if stream:
                    text = b""
                    while b"data: [DONE]" not in text:
                        piece = await r.read(65536)
                        if not piece:
                            raise ConnectionError
                        text += piece
                    if ok and rid:
                        answered.append(rid)
                    break  # hang up after [DONE], as the SDKs do
                length = next(int(l.split(b":", 1)[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
                await r.readexactly(length)
                if ok and rid:
                    answered.append(rid)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, StopIteration):
            return
        finally:
            w.close()


async def load(addr, pid):
    answered, stop = [], asyncio.Event()
    tasks = [asyncio.create_task(client(addr, i % 2 == 1, answered, stop)) for i in range(32)]
    await asyncio.sleep(SECONDS)
    os.kill(pid, signal.SIGKILL)  # mid-flight: clients are reading and writing
    await asyncio.gather(*tasks, return_exceptions=True)
    return answered


server, addr = start()
answered = asyncio.run(load(addr, server.pid))
server.wait()
with sqlite3.connect(f"{work}/tollgate.db") as db:
    stored_before = {r[0] for r in db.execute("SELECT request_id FROM usage_events")}
restarted, _ = start()
with sqlite3.connect(f"{work}/tollgate.db") as db:
    stored = {r[0] for r in db.execute("SELECT request_id FROM usage_events")}
    duplicates = db.execute("SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM usage_events").fetchone()[0]
restarted.send_signal(signal.SIGTERM); restarted.wait(15)
missing = [r for r in answered if r not in stored]
print(json.dumps({"answered_200": len(answered), "stored_before_restart": len(stored_before), "replayed_at_start": len(stored) - len(stored_before),
                  "missing": len(missing), "duplicate_events": duplicates, "spool_left": sum(len(fs) for _, _, fs in os.walk(f"{work}/tollgate.usage-spool"))}))
sys.exit(1 if missing or duplicates else 0)
