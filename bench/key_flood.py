#!/usr/bin/env python3
"""Latency of valid keys, alone and under floods of keys nobody has (stdlib only).

Sends `GET /v1/models` with a valid key at a fixed rate (open loop: each latency is measured from
the moment the request was due, so a stall counts in full) for DURATION seconds, three times:
alone; while FLOOD connections send distinct keys with a wrong checksum as fast as they can
(refused before any lookup: the cost of the flood's traffic itself on this shared machine); and
while they send distinct forged keys with valid checksums (each a candidate for a store lookup,
which the server caps). The last two differ only in the lookups, so their valid-key latencies
compare the lookup machinery's cost. Prints p50/p90/p99/max per phase and the floods' rates and
statuses; writes JSON.

    bench/key_flood.py --url http://127.0.0.1:18490 --key sk-proj-... [--rate 500] [--duration 10]
"""
import argparse
import asyncio
import json
import secrets
import sys
import time
import zlib

ALPHABET = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(number: int, width: int) -> str:
    digits = bytearray(b"0" * width)
    for i in range(width - 1, -1, -1):
        number, rest = divmod(number, 62)
        digits[i] = ALPHABET[rest]
    return digits.decode()


def forged_key(valid_checksum: bool = True, prefix: str = "sk-proj-") -> str:
    """A key in Tollgate's format, unknown to any server, with a valid CRC32 checksum (or one
    off by one)."""
    body = prefix + base62(int.from_bytes(secrets.token_bytes(32), "big"), 43)
    checksum = zlib.crc32(body.encode())
    return body + base62(checksum if valid_checksum else (checksum + 1) % 2**32, 6)


async def request(reader, writer, host: str, key: str) -> int:
    writer.write(f"GET /v1/models HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def valid_load(host, port, key, rate, duration, connections=8):
    """Open-loop requests at `rate` per second; returns latencies in ms and statuses."""
    pool = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    latencies, statuses, tasks = [], {}, []
    start = time.perf_counter()
    total = int(rate * duration)

    async def one(due):
        reader, writer = await pool.get()
        try:
            status = await request(reader, writer, f"{host}:{port}", key)
        finally:
            pool.put_nowait((reader, writer))
        latencies.append((time.perf_counter() - due) * 1000)
        statuses[status] = statuses.get(status, 0) + 1

    for n in range(total):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 30)
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return latencies, statuses


async def flood(host, port, stop: asyncio.Event, connections: int, valid_checksum: bool):
    """Distinct forged keys, as fast as `connections` keep-alive connections allow."""
    sent, statuses = 0, {}

    async def worker():
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not stop.is_set():
                status = await request(reader, writer, f"{host}:{port}", forged_key(valid_checksum))
                sent += 1
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return sent, statuses


def summary(latencies):
    ordered = sorted(latencies)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)
    return {"requests": len(ordered), "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99), "max_ms": round(ordered[-1], 3)}


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--flood-connections", type=int, default=16)
    parser.add_argument("--out")
    args = parser.parse_args()
    host, port = args.url.removeprefix("http://").rstrip("/").split(":")
    port = int(port)

    alone, alone_statuses = await valid_load(host, port, args.key, args.rate, args.duration)
    result = {"rate": args.rate, "duration_s": args.duration, "alone": {**summary(alone), "statuses": alone_statuses}}
    statuses = set(alone_statuses)
    floods = set()
    for name, valid_checksum in (("bad_checksum_flood", False), ("valid_checksum_flood", True)):
        stop = asyncio.Event()
        flooding = asyncio.create_task(flood(host, port, stop, args.flood_connections, valid_checksum))
        await asyncio.sleep(1)  # let the flood reach full speed before measuring
        started = time.perf_counter()
        under, under_statuses = await valid_load(host, port, args.key, args.rate, args.duration)
        stop.set()
        sent, flood_statuses = await flooding
        elapsed = time.perf_counter() - started + 1
        result[name] = {
            **summary(under),
            "statuses": under_statuses,
            "flood": {"requests": sent, "per_second": round(sent / elapsed), "statuses": flood_statuses, "connections": args.flood_connections},
        }
        statuses |= set(under_statuses)
        floods |= set(flood_statuses)
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    # A forged key the server looked up is unknown (401); one over the lookup cap could not be
    # checked (503, retryable); junk never gets past its checksum (401).
    if statuses != {200} or not floods <= {401, 503}:
        sys.exit(f"unexpected statuses: valid keys {statuses}, floods {floods}")


if __name__ == "__main__":
    asyncio.run(main())
