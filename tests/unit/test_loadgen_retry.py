"""A served model that drops a connection under /tokenize: retried once, and a model that keeps
dropping them is a ServiceUnavailable, not a traceback. Against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import contextmanager

import httpx
import pytest

from flagrelease.errors import ServiceUnavailable
from flagrelease.steps import loadgen


@contextmanager
def dropping_server(drops: int):
    """/tokenize closes the first `drops` connections without an answer, then answers."""
    state = {"left": drops}
    ready = threading.Event()
    holder: dict = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                (line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
                b"0",
            )
        )
        await reader.readexactly(length)
        if state["left"] > 0:
            state["left"] -= 1
            writer.close()  # the busy server's dropped connection
            return
        body = json.dumps({"tokens": [1, 2, 3]}).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        )
        await writer.drain()
        writer.close()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
        holder["port"], holder["loop"] = server.sockets[0].getsockname()[1], loop
        ready.set()
        loop.run_forever()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        holder["loop"].call_soon_threadsafe(holder["loop"].stop)
        thread.join(5)


async def counted(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        count = await loadgen._server_counter(client)
        assert count is not None
        return await count("some text")


def test_a_dropped_tokenize_connection_is_sent_again():
    with dropping_server(drops=1) as url:
        assert asyncio.run(counted(url)) == 3


def test_a_server_that_keeps_dropping_fails_the_window_clearly():
    with dropping_server(drops=100) as url, pytest.raises(ServiceUnavailable, match="failed while sizing"):
        loadgen.window(url, "m", input_len=8, output_len=4, num_prompts=1, max_concurrency=1)
