"""N concurrent streaming chat completions against a target, each on its own connection, read
to `data: [DONE]`; prints JSON: completed, first-event latency p50/p99 (from the request's
write to the first `data:` line), total seconds, events read. Loopback only; bounded by TIMEOUT.

    python3 bench/stream_client.py URL KEY N [TIMEOUT]
"""
import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlparse

URL, KEY, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
TIMEOUT = float(sys.argv[4]) if len(sys.argv) > 4 else 60
target = urlparse(URL)
BODY = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "stream please"}]}).encode()
REQUEST = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {target.netloc}\r\nauthorization: Bearer {KEY}\r\n"
           f"content-type: application/json\r\ncontent-length: {len(BODY)}\r\n\r\n").encode() + BODY


async def one(connects: asyncio.Semaphore, results: list) -> None:
    async with connects:
        try:
            reader, writer = await asyncio.open_connection(target.hostname, target.port)
        except OSError:
            results.append(None)
            return
    sent = time.monotonic()
    first = None
    events = 0
    try:
        writer.write(REQUEST)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            results.append(None)
            return
        buffer = b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if first is None and b"data:" in data:
                first = time.monotonic() - sent
            buffer += data
            events += data.count(b"data: {")
            if b"data: [DONE]" in buffer:
                break
            buffer = buffer[-32:]
        results.append((first, events) if first is not None and b"[DONE]" in buffer else None)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        results.append(None)
    finally:
        writer.close()


async def main() -> None:
    results: list = []
    connects = asyncio.Semaphore(256)
    started = time.monotonic()
    tasks = [asyncio.create_task(one(connects, results)) for _ in range(N)]
    done, pending = await asyncio.wait(tasks, timeout=TIMEOUT)
    for task in pending:
        task.cancel()
    ok = [r for r in results if r]
    firsts = sorted(r[0] for r in ok)
    pct = lambda p: round(firsts[min(len(firsts) - 1, int(p * len(firsts)))] * 1000, 1) if firsts else None
    print(json.dumps({"streams": N, "completed": len(ok), "first_event_p50_ms": pct(0.5), "first_event_p99_ms": pct(0.99),
                      "first_event_mean_ms": round(statistics.mean(firsts) * 1000, 1) if firsts else None,
                      "events": sum(r[1] for r in ok), "seconds": round(time.monotonic() - started, 2)}))


asyncio.run(main())
