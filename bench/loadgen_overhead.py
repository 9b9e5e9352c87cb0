"""How much does FlagRelease's load generator cost? Requests/s it can drive, latency it adds.

The client under test ("ours") is what `flagrelease.steps.loadgen.bench` times: its
httpx client, a warm-up `_run`, the timed `_run` and `summarize`, fed prompts
prepared beforehand; `loadgen.bench()` itself also runs once per level, to
cross-check its reported rate and to show what it spends outside the timed part
(fitting prompts with /tokenize). It is measured against a trivially fast OpenAI-compatible
streaming server that this script starts itself in a subprocess on 127.0.0.1
(raw asyncio HTTP/1.1: /tokenize, /health and streaming /v1/completions SSE with
usage), so what is measured is the client's cost, not a model's. The server
sleeps a known delay before the first token and between tokens (zero in the
`max` mode) and stamps into the finish chunk's `timings` when it finished
reading the request and when it wrote the first and the last token, on
CLOCK_MONOTONIC, the same clock as the client's `time.perf_counter()`. So

    added TTFT = client TTFT - (server first-token write - server request read)
    added e2e  = client e2e  - (server last-token write  - server request read)
    added ITL  = client mean gap - server mean gap, per request

is the time the client side (TCP connect, request write, kernel, response parse,
our bookkeeping, event-loop queueing) puts on top of what the server did.

In the same run, level for level, two baselines drive the same server with the
same wire behaviour (one connection per stream, `Connection: close`, as loadgen
does for llama-server's sake):
  httpx  a bare httpx.AsyncClient streaming loop: semaphore, aiter_lines, a
         timestamp per `data:` line, no per-chunk JSON, no pydantic;
  raw    asyncio streams, hand-written HTTP/1.1: the floor on this machine,
         and a check that the mock server is not what limits the others.
Ratios are ours / httpx, computed per repeat (clients alternate order), and
reported as the median with the range over repeats.

Optionally (`--real-server auto`) the same comparison runs against the real
llama-server in a locally built tiny-llama image (`docker run -p
127.0.0.1:PORT:9010`, weights mounted read-only, container always removed).

Example (the BENCHMARKS.md run, under 2 min on 2 cores; without --real-server ~1 min):

    .venv/bin/python bench/loadgen_overhead.py --repeats 3 --real-server auto --json /tmp/loadgen_overhead.json

Quick look (one repeat, a quarter of the requests):

    .venv/bin/python bench/loadgen_overhead.py --repeats 1 --scale 0.25
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from flagrelease.perf_metrics import summarize
from flagrelease.steps import loadgen

MODEL = "mock"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LEVEL_TIMEOUT_S = 60.0  # no level may run longer than this, whatever happens
REQUEST_TIMEOUT_S = 20.0
REAL_PORT = 9010  # the engine's port inside the tiny-llama image (matrix.yaml)
REAL_WEIGHTS = Path("/root/.local/share/flagrelease/weights/tiny-llama")
REAL_MOUNT = "/data/weights/tiny-llama"
REAL_MODEL = "tiny-llama-flagos"


# --------------------------------------------------------------------------- the mock server

TOKEN_CHUNK = (
    "data: "
    + json.dumps(
        {
            "choices": [{"text": " tok", "index": 0, "logprobs": None, "finish_reason": None}],
            "model": MODEL,
            "object": "text_completion",
        },
        separators=(",", ":"),
    )
    + "\n\n"
).encode()
DONE = b"data: [DONE]\n\n"


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


async def _serve(ttft_s: float, itl_s: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                received = time.perf_counter()
                close = headers.get("connection", "").lower() == "close"
                conn = b"Connection: close\r\n" if close else b""
                if path.endswith("/v1/completions") and method == "POST":
                    await _stream(writer, json.loads(body), received, conn)
                else:
                    if path.endswith("/tokenize"):
                        data = json.loads(body)
                        text = data.get("content") or data.get("prompt") or ""
                        status, payload = b"200 OK", {"tokens": list(range(len(text.split())))}
                    elif path.endswith("/health"):
                        status, payload = b"200 OK", {"status": "ok"}
                    else:
                        status, payload = b"404 Not Found", {"error": path}
                    raw = json.dumps(payload).encode()
                    writer.write(
                        b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                        % (status, len(raw), conn, raw)
                    )
                    await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _stream(writer: asyncio.StreamWriter, body: dict, received: float, conn: bytes) -> None:
        n = int(body.get("max_tokens") or 16)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n%s\r\n" % conn
        )
        if ttft_s:
            await asyncio.sleep(ttft_s)
        first = last = received
        for i in range(n):
            if i and itl_s:
                await asyncio.sleep(itl_s)
            writer.write(_chunk(TOKEN_CHUNK))
            await writer.drain()
            last = time.perf_counter()
            if i == 0:
                first = last
        prompt_tokens = len(str(body.get("prompt", "")).split()) + 1  # a BOS, as llama-server adds
        finish = {
            "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}],
            "model": MODEL,
            "object": "text_completion",
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n},
            "timings": {"mock_received": received, "mock_first": first, "mock_last": last, "mock_tokens": n},
        }
        writer.write(
            _chunk(b"data: " + json.dumps(finish, separators=(",", ":")).encode() + b"\n\n")
            + _chunk(DONE)
            + b"0\r\n\r\n"
        )
        await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()
    # The parent holds our stdin: when it goes away (exit, crash, Ctrl-C), so do we.
    loop.add_reader(sys.stdin.fileno(), lambda: stdin_closed.done() or stdin_closed.set_result(None))
    async with server:
        await stdin_closed


@contextlib.contextmanager
def mock_server(ttft_ms: float, itl_ms: float):
    """Yield (base URL, server pid) of a mock server in a subprocess; always stopped."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "_serve", str(ttft_ms), str(itl_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (and its reaped children) from /proc, 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / CLK_TCK  # utime stime cutime cstime


def container_pids(name: str) -> list[int]:
    out = subprocess.run(["docker", "top", name, "-eo", "pid"], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()[1:] if x.isdigit()]


# --------------------------------------------------------------------------- the clients


class Meter:
    """Client and server CPU and wall time over the timed part of one level."""

    def __init__(self, server_pids: list[int]):
        self.server_pids = server_pids

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.srv0 = sum(cpu_seconds(p) for p in self.server_pids)
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        self.srv = sum(cpu_seconds(p) for p in self.server_pids) - self.srv0


_server_pids: list[int] = []


async def run_ours(base_url: str, model: str, conc: int, n: int, prompts: list[str], out_len: int, seed: int) -> dict:
    """What `loadgen.bench` does once its prompts are fitted: its client, an unmeasured warm-up
    `_run`, the timed `_run` (bench's duration is exactly this call) and `summarize`."""
    rng = random.Random(seed)
    async with loadgen._client(base_url, REQUEST_TIMEOUT_S) as client:
        await loadgen._run(client, model, prompts[:conc], out_len, conc, math.inf, rng, REQUEST_TIMEOUT_S)
        with Meter(_server_pids) as meter:
            started = time.perf_counter()
            traces = await loadgen._run(
                client, model, prompts[conc : conc + n], out_len, conc, math.inf, rng, REQUEST_TIMEOUT_S
            )
            duration = time.perf_counter() - started
    summarized = time.perf_counter()
    result = summarize(
        traces,
        duration,
        {"max_concurrency": conc, "request_rate": math.inf, "num_prompts": n, "input_len": 0, "output_len": out_len},
    )
    summarize_s = time.perf_counter() - summarized
    reqs = [
        {
            "start": t.start,
            "ttft": t.ttft_s,
            "e2e": t.latency_s,
            "tokens": t.output_len,
            "prompt": t.prompt_len,
            "timings": t.timings,
        }
        for t in result.traces
        if t.success
    ]
    return {"duration": duration, "failed": result.failed, "meter": meter, "reqs": reqs, "summarize_s": summarize_s}


async def run_bench_end_to_end(
    base_url: str, model: str, conc: int, n: int, in_len: int, out_len: int, seed: int
) -> dict:
    """`loadgen.bench` itself, once: its reported throughput, and what it spends outside the timed
    part (fitting every prompt with /tokenize, the probe, the warm-ups, the summary)."""
    started = time.perf_counter()
    result = await loadgen.bench(
        base_url,
        model,
        input_len=in_len,
        output_len=out_len,
        num_prompts=n,
        max_concurrency=conc,
        num_warmups=conc,
        seed=seed,
        request_timeout_s=REQUEST_TIMEOUT_S,
    )
    wall = time.perf_counter() - started
    return {
        "concurrency": conc,
        "requests": n,
        "completed": result.completed,
        "failed": result.failed,
        "wall_s": wall,
        "timed_s": result.duration_s,
        "rps_reported": result.request_throughput,
        "untimed_ms_per_prompt": 1000 * (wall - result.duration_s) / (n + conc),
        "mean_ttft_ms": result.mean_ttft_ms,
        "mean_e2el_ms": result.mean_e2el_ms,
    }


def _body(model: str, prompt: str, out_len: int) -> dict:
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": out_len,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _finish(line: str) -> dict:
    chunk = json.loads(line.removeprefix("data:"))
    return {"usage": chunk.get("usage") or {}, "timings": chunk.get("timings")}


async def _bounded(conc: int, jobs) -> tuple[list, float]:
    slots = asyncio.Semaphore(conc)

    async def one(job):
        async with slots:
            return await job()

    started = time.perf_counter()
    out = await asyncio.gather(*(one(j) for j in jobs))
    return out, time.perf_counter() - started


async def run_httpx(base_url: str, model: str, conc: int, n: int, prompts: list[str], out_len: int) -> dict:
    """The minimal streaming client: the same wire behaviour as loadgen, none of its bookkeeping."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_S, trust_env=False, limits=limits
    ) as client:

        async def request(prompt: str) -> dict | None:
            start = time.perf_counter()
            first = token_end = None
            finish = None
            try:
                async with client.stream(
                    "POST", "/v1/completions", json=_body(model, prompt, out_len), headers={"Connection": "close"}
                ) as response:
                    async for line in response.aiter_lines():
                        if not line.startswith("data:") or line == "data: [DONE]":
                            continue
                        if '"usage"' in line:  # the finish chunk: no token, parsed once
                            finish = line
                            continue
                        token_end = time.perf_counter()
                        if first is None:
                            first = token_end
            except httpx.HTTPError:
                return None
            if first is None or finish is None:
                return None
            info = _finish(finish)
            return {
                "start": start,
                "ttft": first - start,
                "e2e": token_end - start,
                "tokens": info["usage"].get("completion_tokens", 0),
                "prompt": info["usage"].get("prompt_tokens", 0),
                "timings": info["timings"],
            }

        await _bounded(conc, [lambda p=p: request(p) for p in prompts[:conc]])  # warm-up, as ours
        with Meter(_server_pids) as meter:
            out, duration = await _bounded(conc, [lambda p=p: request(p) for p in prompts[conc : conc + n]])
    reqs = [r for r in out if r]
    return {"duration": duration, "failed": len(out) - len(reqs), "meter": meter, "reqs": reqs}


async def run_raw(base_url: str, model: str, conc: int, n: int, prompts: list[str], out_len: int) -> dict:
    """Hand-written HTTP/1.1 over asyncio streams: what this machine allows a Python client at all."""
    host, port = base_url.removeprefix("http://").split(":")

    async def request(prompt: str) -> dict | None:
        body = json.dumps(_body(model, prompt, out_len)).encode()
        head = (
            f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        first = token_end = None
        finish = None
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(head + body)
            while line := await reader.readline():
                if not line.startswith(b"data:") or line.startswith(b"data: [DONE]"):
                    continue
                if b'"usage"' in line:
                    finish = line
                    continue
                token_end = time.perf_counter()
                if first is None:
                    first = token_end
            writer.close()
        except (OSError, asyncio.IncompleteReadError):
            return None
        if first is None or finish is None:
            return None
        info = _finish(finish.decode())
        return {
            "start": start,
            "ttft": first - start,
            "e2e": token_end - start,
            "tokens": info["usage"].get("completion_tokens", 0),
            "prompt": info["usage"].get("prompt_tokens", 0),
            "timings": info["timings"],
        }

    await _bounded(conc, [lambda p=p: request(p) for p in prompts[:conc]])
    with Meter(_server_pids) as meter:
        out, duration = await _bounded(conc, [lambda p=p: request(p) for p in prompts[conc : conc + n]])
    reqs = [r for r in out if r]
    return {"duration": duration, "failed": len(out) - len(reqs), "meter": meter, "reqs": reqs}


async def make_prompts(target: dict, count: int, seed: int) -> list[str]:
    """Prompts of `input_len` tokens as the server counts them (a BOS included), of loadgen's random
    words. The mock counts whitespace words, so none need fitting; for a real server they are cut
    with loadgen's own /tokenize bisection. Never timed."""
    rng, in_len = random.Random(seed), target["input_len"]
    if target["model"] == MODEL:
        return [loadgen._words(rng, in_len - 1) for _ in range(count)]
    async with httpx.AsyncClient(base_url=target["base_url"], timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        counter = await loadgen._server_counter(client)
        if counter is None:
            raise RuntimeError(f"{target['base_url']} has no /tokenize")
        # What the server adds to a prompt (a BOS, say), measured as loadgen measures it.
        probe = loadgen._words(rng, loadgen.PROBE_TOKENS)
        probed = await loadgen._stream_completion(client, target["model"], probe, 1, REQUEST_TIMEOUT_S)
        if not probed.success:
            raise RuntimeError(f"probe request failed: {probed.error}")
        added = probed.prompt_len - await counter(probe)
        limit = asyncio.Semaphore(loadgen.TOKENIZE_PARALLEL)

        async def fit(text: str) -> str:
            async with limit:
                return await loadgen._fit(counter, text, in_len - added)

        return list(await asyncio.gather(*(fit(loadgen._words(rng, 2 * in_len)) for _ in range(count))))


# --------------------------------------------------------------------------- analysis


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def analyse(run: dict) -> dict:
    reqs, meter = run["reqs"], run["meter"]
    done = len(reqs)
    out = {
        "completed": done,
        "failed": run["failed"],
        "duration_s": run["duration"],
        "rps": done / run["duration"],
        "tokens_per_s": sum(r["tokens"] for r in reqs) / run["duration"],
        "client_cpu_ms_per_req": 1000 * meter.cpu / max(done, 1),
        "client_cpu_util": meter.cpu / meter.wall,
        "server_cpu_util": meter.srv / meter.wall,
        "ttft_ms_p50": 1000 * pct([r["ttft"] for r in reqs], 50),
        "e2e_ms_p50": 1000 * pct([r["e2e"] for r in reqs], 50),
        "prompt_tokens_mean": statistics.fmean(r["prompt"] for r in reqs) if reqs else math.nan,
    }
    if "summarize_s" in run:
        out["summarize_ms_per_1k_req"] = 1e6 * run["summarize_s"] / max(done, 1)
    stamped = [r for r in reqs if r["timings"] and "mock_received" in r["timings"]]
    if stamped:
        added_ttft, added_e2e, added_itl, request_path = [], [], [], []
        for r in stamped:
            t = r["timings"]
            server_ttft, server_e2e = t["mock_first"] - t["mock_received"], t["mock_last"] - t["mock_received"]
            added_ttft.append(r["ttft"] - server_ttft)
            added_e2e.append(r["e2e"] - server_e2e)
            request_path.append(t["mock_received"] - r["start"])
            if r["tokens"] > 1:
                added_itl.append(((r["e2e"] - r["ttft"]) - (t["mock_last"] - t["mock_first"])) / (r["tokens"] - 1))
        server_ttft = [r["timings"]["mock_first"] - r["timings"]["mock_received"] for r in stamped]
        out |= {
            "added_ttft_ms_p50": 1000 * pct(added_ttft, 50),
            "added_ttft_ms_p99": 1000 * pct(added_ttft, 99),
            "added_e2e_ms_p50": 1000 * pct(added_e2e, 50),
            "added_e2e_ms_p99": 1000 * pct(added_e2e, 99),
            "added_itl_us_mean": 1e6 * statistics.fmean(added_itl) if added_itl else math.nan,
            "request_path_ms_p50": 1000 * pct(request_path, 50),
            "server_ttft_ms_p50": 1000 * pct(server_ttft, 50),
        }
    return out


def spread(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    med = statistics.median(values)
    digits = 0 if abs(med) >= 100 else 2 if abs(med) < 10 else 1

    def fmt(v: float) -> str:
        return f"{v:.{digits}f}"

    return fmt(med) if len(values) == 1 else f"{fmt(med)} [{fmt(min(values))}–{fmt(max(values))}]"


# --------------------------------------------------------------------------- driving it


async def level(target: dict, clients: list[str], conc: int, n: int, repeat: int, seed: int) -> dict:
    """One level, every client once, in an order rotated by `repeat`. Each client gets prompts of
    its own (a real server must not find one in its prefix cache), all prepared before any runs."""
    base_url, model, out_len = target["base_url"], target["model"], target["output_len"]
    prompts = {name: await make_prompts(target, conc + n, seed + i) for i, name in enumerate(clients)}
    order = clients[repeat % len(clients) :] + clients[: repeat % len(clients)]
    runs = {}
    for name in order:
        async with asyncio.timeout(LEVEL_TIMEOUT_S):
            if name == "ours":
                run = await run_ours(base_url, model, conc, n, prompts[name], out_len, seed)
            elif name == "httpx":
                run = await run_httpx(base_url, model, conc, n, prompts[name], out_len)
            else:
                run = await run_raw(base_url, model, conc, n, prompts[name], out_len)
        runs[name] = analyse(run)
    return runs


def run_target(
    target: dict,
    clients: list[str],
    plan: list[tuple[int, int]],
    repeats: int,
    results: list[dict],
    end_to_end: list[dict],
    e2e_requests: int,
    on_line=print,
) -> None:
    for repeat in range(repeats):
        for conc, n in plan:
            seed = 10_000 * repeat + 100 * conc + zlib.crc32(target["name"].encode()) % 97
            runs = asyncio.run(level(target, clients, conc, n, repeat, seed))
            results.append(
                {"target": target["name"], "concurrency": conc, "requests": n, "repeat": repeat, "runs": runs}
            )
            on_line(
                f"  {target['name']:<7} c={conc:<3} repeat {repeat + 1}/{repeats}: "
                + ", ".join(
                    f"{k} {v['rps']:.0f} req/s" + (f" (+{v['failed']} failed)" if v["failed"] else "")
                    for k, v in runs.items()
                )
            )
    if e2e_requests and target.get("end_to_end", True):
        for conc, n in plan:
            got = asyncio.run(
                run_bench_end_to_end(
                    target["base_url"],
                    target["model"],
                    conc,
                    max(conc, min(n, e2e_requests)),
                    target["input_len"],
                    target["output_len"],
                    seed=99_000 + conc,
                )
            )
            end_to_end.append({"target": target["name"]} | got)
            on_line(
                f"  {target['name']:<7} c={conc:<3} loadgen.bench() end to end: {got['rps_reported']:.0f} req/s "
                f"reported, {got['untimed_ms_per_prompt']:.1f} ms per prompt outside the timed part"
            )


MOCK_COLUMNS = [
    ("req/s", "rps", 1),
    ("req/s ours/httpx", "ratio:rps", 1),
    ("client CPU ms/req", "client_cpu_ms_per_req", 1),
    ("CPU ours/httpx", "ratio:client_cpu_ms_per_req", 1),
    ("client CPU %", "client_cpu_util", 100),
    ("server CPU %", "server_cpu_util", 100),
    ("added TTFT p50 ms", "added_ttft_ms_p50", 1),
    ("added TTFT p99 ms", "added_ttft_ms_p99", 1),
    ("of it, to server p50 ms", "request_path_ms_p50", 1),
    ("added e2e p50 ms", "added_e2e_ms_p50", 1),
    ("added ITL µs/token", "added_itl_us_mean", 1),
]
REAL_COLUMNS = [
    ("req/s", "rps", 1),
    ("req/s ours/httpx", "ratio:rps", 1),
    ("TTFT p50 ms", "ttft_ms_p50", 1),
    ("e2e p50 ms", "e2e_ms_p50", 1),
    ("e2e p50 ours/httpx", "ratio:e2e_ms_p50", 1),
    ("client CPU ms/req", "client_cpu_ms_per_req", 1),
    ("client CPU %", "client_cpu_util", 100),
    ("server CPU %", "server_cpu_util", 100),
    ("prompt tokens", "prompt_tokens_mean", 1),
]


def table(results: list[dict], clients: list[str], targets: list[str], columns) -> str:
    """Per target and level: each metric's median [min–max] over repeats; a ratio is taken
    per repeat (the two clients ran back to back) and then summarized the same way."""
    head = ["target", "c", "client"] + [c[0] for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for target in targets:
        for conc in sorted({r["concurrency"] for r in results if r["target"] == target}):
            level_runs = [r["runs"] for r in results if (r["target"], r["concurrency"]) == (target, conc)]
            for name in clients:
                if not any(name in runs for runs in level_runs):
                    continue
                cells = [target, str(conc), name]
                for _, key, scale in columns:
                    if key.startswith("ratio:"):
                        key = key.removeprefix("ratio:")
                        pairs = [(runs[name], runs["httpx"]) for runs in level_runs if name in runs and "httpx" in runs]
                        cells.append(
                            "-"
                            if name == "httpx" or not pairs
                            else spread([a[key] / b[key] for a, b in pairs if key in a and b.get(key)])
                        )
                    else:
                        cells.append(
                            spread(
                                [runs[name][key] * scale for runs in level_runs if name in runs and key in runs[name]]
                            )
                        )
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def end_to_end_table(rows: list[dict]) -> str:
    cols = [
        "target",
        "c",
        "requests",
        "bench() wall s",
        "timed s",
        "req/s reported",
        "untimed ms/prompt",
        "mean TTFT ms",
        "mean e2e ms",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['concurrency']} | {r['completed']}"
            + (f" (+{r['failed']} failed)" if r["failed"] else "")
            + f" | {r['wall_s']:.2f} | {r['timed_s']:.2f} | {r['rps_reported']:.0f} | "
            f"{r['untimed_ms_per_prompt']:.1f} | {r['mean_ttft_ms']:.2f} | {r['mean_e2el_ms']:.2f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the real server (optional)


def find_real_image() -> str | None:
    out = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        return None
    found = [
        line.split("\t")
        for line in out.stdout.splitlines()
        if line.startswith("flagrelease/flagrelease-cpu-release-model_tiny-llama-") and ":<none>" not in line
    ]
    return max(found, key=lambda f: f[1])[0] if found else None


@contextlib.contextmanager
def real_server(image: str, ready_timeout_s: float = 120.0):
    """Yield (base URL, container name) of the image's llama-server on 127.0.0.1; always removed."""
    name = f"loadgen-overhead-{uuid.uuid4().hex[:8]}"
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "-p",
                f"127.0.0.1:{port}:{REAL_PORT}",
                "-e",
                "OMP_NUM_THREADS=2",
                "-v",
                f"{REAL_WEIGHTS}:{REAL_MOUNT}:ro",
                image,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + ready_timeout_s
        with httpx.Client(base_url=base_url, timeout=5, trust_env=False) as api:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if api.get("/health").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    log = subprocess.run(
                        ["docker", "logs", "--tail", "20", name], capture_output=True, text=True, check=False
                    )
                    raise RuntimeError(f"{image} not ready in {ready_timeout_s:.0f} s:\n{log.stdout}{log.stderr}")
                time.sleep(0.25)
        yield base_url, name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


# --------------------------------------------------------------------------- main


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    os_name = next(
        (
            line.split("=", 1)[1].strip('"')
            for line in Path("/etc/os-release").read_text().splitlines()
            if line.startswith("PRETTY_NAME")
        ),
        platform.platform(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 2**20, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "httpx": httpx.__version__,
        "loadavg_at_start": os.getloadavg(),
        "cpu_pressure_at_start": cpu_pressure(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def cpu_pressure() -> str:
    """The kernel's CPU pressure (PSI): how often something runnable waited for a CPU."""
    with contextlib.suppress(OSError):
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    return ""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        epilog="example:\n  .venv/bin/python bench/loadgen_overhead.py --repeats 3 --real-server auto "
        "--json /tmp/loadgen_overhead.json\n"
        "  .venv/bin/python bench/loadgen_overhead.py --repeats 1 --scale 0.25   # quick look\n"
        "  .venv/bin/python bench/loadgen_overhead.py --real-server auto          # + tiny-llama image",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--concurrency", default="1,8,64", help="levels (default %(default)s)")
    p.add_argument(
        "--requests",
        default="200,500,1000",
        help="measured requests per level for the max mode, one per concurrency (default %(default)s)",
    )
    p.add_argument(
        "--paced-requests",
        default="50,200,600",
        help="the same for the paced mode (default %(default)s); 0 skips a level",
    )
    p.add_argument("--paced-ttft-ms", type=float, default=10.0, help="paced mode: server delay to the first token")
    p.add_argument("--paced-itl-ms", type=float, default=1.0, help="paced mode: server delay between tokens")
    p.add_argument("--no-paced", action="store_true", help="only the max (zero-delay) mode")
    p.add_argument("--input-len", type=int, default=8, help="prompt tokens (default %(default)s)")
    p.add_argument("--output-len", type=int, default=16, help="streamed tokens per request (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="every level this many times (default %(default)s)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every request count (e.g. 0.25)")
    p.add_argument("--clients", default="ours,httpx,raw", help="any of ours,httpx,raw (default %(default)s)")
    p.add_argument(
        "--real-server",
        default="off",
        help="off, auto (newest local flagrelease/...tiny-llama image) or an image reference",
    )
    p.add_argument("--real-concurrency", default="1,4", help="real-server levels (default %(default)s)")
    p.add_argument("--real-requests", default="30,60", help="real-server requests per level (default %(default)s)")
    p.add_argument("--real-shape", default="32,32", help="real-server input,output tokens (default %(default)s)")
    p.add_argument(
        "--e2e-requests",
        type=int,
        default=100,
        help="requests of the one loadgen.bench() end-to-end run per level, 0 skips (default %(default)s)",
    )
    p.add_argument("--json", type=Path, help="write every run and the summary here")
    return p.parse_args(argv)


def _plan(conc: str, counts: str, scale: float) -> list[tuple[int, int]]:
    cs, ns = [int(x) for x in conc.split(",")], [int(x) for x in counts.split(",")]
    if len(cs) != len(ns):
        raise SystemExit(f"{len(cs)} concurrencies but {len(ns)} request counts")
    return [(c, max(c, round(n * scale))) for c, n in zip(cs, ns, strict=True) if n > 0]


def main(argv: list[str]) -> int:
    if argv[:1] == ["_serve"]:
        asyncio.run(_serve(float(argv[1]) / 1000, float(argv[2]) / 1000))
        return 0
    args = parse_args(argv)
    clients = [c for c in args.clients.split(",") if c]
    if unknown := set(clients) - {"ours", "httpx", "raw"}:
        raise SystemExit(f"unknown clients {sorted(unknown)}")
    info = machine()
    began = time.monotonic()
    print(
        f"{info['cpu']}, {info['nproc']} CPUs, {info['ram_gib']} GiB, {info['os']}, Python {info['python']}, "
        f"load average {info['loadavg_at_start'][0]:.2f} at start"
    )
    results: list[dict] = []
    end_to_end: list[dict] = []
    modes = [("max", 0.0, 0.0, _plan(args.concurrency, args.requests, args.scale))]
    if not args.no_paced:
        modes.append(
            ("paced", args.paced_ttft_ms, args.paced_itl_ms, _plan(args.concurrency, args.paced_requests, args.scale))
        )
    targets = {}
    for name, ttft_ms, itl_ms, plan in modes:
        with mock_server(ttft_ms, itl_ms) as (base_url, pid):
            _server_pids[:] = [pid]
            target = {
                "name": name,
                "base_url": base_url,
                "model": MODEL,
                "input_len": args.input_len,
                "output_len": args.output_len,
                "server_ttft_ms": ttft_ms,
                "server_itl_ms": itl_ms,
                "end_to_end": name == "max",
            }
            targets[name] = target | {"plan": plan}
            print(
                f"mock server '{name}' on {base_url}: delay {ttft_ms:g} ms to the first token, "
                f"{itl_ms:g} ms between tokens, {args.output_len} tokens per request"
            )
            run_target(target, clients, plan, args.repeats, results, end_to_end, args.e2e_requests)
    if args.real_server != "off":
        image = find_real_image() if args.real_server == "auto" else args.real_server
        if image is None:
            print("no local tiny-llama image: real-server section skipped")
        else:
            in_len, out_len = (int(x) for x in args.real_shape.split(","))
            plan = _plan(args.real_concurrency, args.real_requests, args.scale)
            print(f"real server: {image}")
            with real_server(image) as (base_url, name):
                _server_pids[:] = container_pids(name)
                target = {
                    "name": "llama",
                    "base_url": base_url,
                    "model": REAL_MODEL,
                    "input_len": in_len,
                    "output_len": out_len,
                    "image": image,
                }
                targets["llama"] = target | {"plan": plan}
                run_target(
                    target,
                    [c for c in clients if c != "raw"],
                    plan,
                    args.repeats,
                    results,
                    end_to_end,
                    args.e2e_requests,
                )
    elapsed = time.monotonic() - began
    info["loadavg_at_end"], info["cpu_pressure_at_end"] = os.getloadavg(), cpu_pressure()
    print()
    print(table(results, clients, [t for t in targets if t != "llama"], MOCK_COLUMNS))
    if "llama" in targets:
        print()
        print(table(results, clients, ["llama"], REAL_COLUMNS))
    if end_to_end:
        print()
        print(end_to_end_table(end_to_end))
    print(
        f"\n{args.repeats} repeat(s); cells are median [min–max] over repeats; a ratio is taken per repeat "
        f"(the clients ran back to back) and then summarized. {elapsed:.0f} s in all."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "machine": info,
            "argv": sys.argv,
            "elapsed_s": elapsed,
            "targets": targets,
            "results": results,
            "end_to_end": end_to_end,
        }
        args.json.write_text(json.dumps(record, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
