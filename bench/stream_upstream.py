"""A streaming fake provider for bench/streams.sh: every POST gets a chat-completion event
stream of EVENTS chunks, one every GAP seconds, then a usage chunk and `data: [DONE]`, chunked,
on keep-alive connections. Loopback only.

    python3 bench/stream_upstream.py PORT [EVENTS] [GAP]
"""
import asyncio
import json
import sys

PORT = int(sys.argv[1])
EVENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
GAP = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(i: int) -> bytes:
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1795400000,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}]}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


USAGE = b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1795400000,
                                "model": "gpt-4o-mini", "choices": [],
                                "usage": {"prompt_tokens": 9, "completion_tokens": EVENTS, "total_tokens": 9 + EVENTS}},
                               separators=(",", ":")).encode() + b"\n\n"
EVENT_BYTES = [chunk(event(i)) for i in range(EVENTS)]


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET /v1/models"):
                body = b'{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1,"owned_by":"bench"}]}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            for piece in EVENT_BYTES:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(GAP)
            writer.write(chunk(USAGE) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", PORT, backlog=8192)
    async with server:
        await server.serve_forever()


asyncio.run(main())
