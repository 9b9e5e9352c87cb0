"""Load generator: `vllm bench serve`-style random traffic on a served model.

Requests go to streaming /v1/completions with a raw prompt, as `vllm bench serve`
does by default. The chat API would wrap every prompt in its template (43 tokens
for the tiny test model's default system prompt), which makes short shapes such as
32 input tokens impossible; a raw prompt has no such floor.

Input lengths are exact as the server counts them: each prompt is a prefix of
random words cut to a token count with the server's own /tokenize, and a probe
request measures what the server adds on top (a BOS token, say: usage.prompt_tokens
minus the probe's tokenized length), which is subtracted. Servers without
/tokenize get a linear chars-per-token estimate from two probes, so lengths there
are approximate; every trace keeps the server's usage.prompt_tokens either way.

Each level gets fresh prompts (seeded per level) and the warm-ups their own, so no
measured request finds its prompt already in a prefix cache. Rerunning a seed
against the same server process does find them cached (llama-server keeps old
prompts in RAM): pass a new seed, or start a fresh server, to measure prefill.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import httpx
import numpy as np

from flagrelease.adapters.serve_client import loopback_url
from flagrelease.errors import ServiceError
from flagrelease.perf_metrics import PerfResult, RequestTrace, summarize
from flagrelease.results import PerfVerdict

TokenCount = Callable[[str], Awaitable[int]]

PROBE_TOKENS = 16
TOKENIZE_PARALLEL = 16  # /tokenize calls in flight while fitting prompts


async def bench(
    base_url: str,
    model: str,
    *,
    input_len: int,
    output_len: int,
    num_prompts: int,
    max_concurrency: int,
    request_rate: float = math.inf,
    num_warmups: int = 1,
    seed: int = 0,
    request_timeout_s: float = 120.0,
) -> PerfResult:
    """One level: `num_prompts` measured requests (plus unmeasured warm-ups) of one shape."""
    if num_prompts < 1 or max_concurrency < 1 or output_len < 1 or not request_rate > 0:
        raise ValueError("num_prompts, max_concurrency, output_len and request_rate must be positive")
    rng = random.Random(seed)
    async with _client(base_url, request_timeout_s) as client:
        count = await _server_counter(client) or await _estimated_counter(client, model, rng, request_timeout_s)
        probe = await _fit(count, _words(rng, 4 * PROBE_TOKENS), PROBE_TOKENS)
        probed = await _stream_completion(client, model, probe, 1, request_timeout_s)
        if not probed.success:
            raise ServiceError(f"probe request to {model} failed: {probed.error}", where=base_url)
        prompt_tokens = input_len - (probed.prompt_len - await count(probe))
        if prompt_tokens < 1:
            raise ValueError(f"input_len {input_len} leaves no room for a prompt beside the tokens the server adds")
        limit = asyncio.Semaphore(TOKENIZE_PARALLEL)

        async def fitted(text: str) -> str:
            async with limit:
                return await _fit(count, text, prompt_tokens)

        texts = [_words(rng, 2 * prompt_tokens) for _ in range(num_warmups + num_prompts)]
        prompts = await asyncio.gather(*(fitted(t) for t in texts))
        await _run(client, model, prompts[:num_warmups], output_len, max_concurrency, math.inf, rng, request_timeout_s)
        started = time.perf_counter()
        traces = await _run(
            client, model, prompts[num_warmups:], output_len, max_concurrency, request_rate, rng, request_timeout_s
        )
        duration = time.perf_counter() - started
    settings = dict(
        max_concurrency=max_concurrency,
        request_rate=request_rate,
        num_prompts=num_prompts,
        input_len=input_len,
        output_len=output_len,
    )
    return summarize(traces, duration, settings)


def window(base_url: str, model: str, **level) -> PerfResult:
    """One measurement window of one level (`bench`'s arguments), from synchronous code."""
    return asyncio.run(bench(base_url, model, **level))


def sweep(
    base_url: str,
    model: str,
    concurrencies: list[int],
    shapes: list[tuple[int, int]],
    num_prompts: int,
    *,
    request_rate: float = math.inf,
    num_warmups: int = 1,
    seed: int = 0,
    request_timeout_s: float = 120.0,
) -> list[PerfResult]:
    """Every (input_len, output_len) shape at every concurrency, one level after another."""

    async def levels() -> list[PerfResult]:
        results = []
        for index, ((input_len, output_len), concurrency) in enumerate(product(shapes, concurrencies)):
            results.append(
                await bench(
                    base_url,
                    model,
                    input_len=input_len,
                    output_len=output_len,
                    num_prompts=num_prompts,
                    max_concurrency=concurrency,
                    request_rate=request_rate,
                    num_warmups=num_warmups,
                    seed=seed + index,
                    request_timeout_s=request_timeout_s,
                )
            )
        return results

    return asyncio.run(levels())


def plot_sweep(
    results: list[PerfResult] | dict[str, list[PerfResult]], path: Path | str, verdicts: Sequence[PerfVerdict] = ()
) -> None:
    """PNG: output throughput and mean TTFT against concurrency, one line per shape
    (and per series, e.g. native vs. flaggems, when given a mapping of them); with the
    gate's verdicts, a third panel: each level's ratio with its confidence interval."""
    from matplotlib.figure import Figure  # here: half a second of import a no-op run does not need

    series = results if isinstance(results, dict) else {"": results}
    fig = Figure(figsize=(16 if verdicts else 11, 4), layout="constrained")  # no pyplot: no global state
    panels = fig.subplots(1, 3 if verdicts else 2)
    throughput, ttft = panels[0], panels[1]
    for name, runs in series.items():
        for shape in sorted({(r.input_len, r.output_len) for r in runs}):
            level = sorted((r for r in runs if (r.input_len, r.output_len) == shape), key=lambda r: r.max_concurrency)
            x = [r.max_concurrency for r in level]
            label = f"{name + ': ' if name else ''}in {shape[0]} / out {shape[1]}"
            throughput.plot(x, [r.output_throughput for r in level], marker="o", label=label)
            ttft.plot(x, [r.mean_ttft_ms for r in level], marker="o", label=label)
    concurrencies = sorted({r.max_concurrency for runs in series.values() for r in runs})
    for ax, ylabel in ((throughput, "output throughput (tok/s)"), (ttft, "mean TTFT (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(concurrencies, labels=[str(c) for c in concurrencies])
        ax.set_xlabel("max concurrency")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if verdicts:
        _plot_ratios(panels[2], list(verdicts))
    fig.savefig(path, format="png", dpi=120)


def _plot_ratios(ax, verdicts: list[PerfVerdict]) -> None:
    """flaggems / native per level: the point ratio, its interval, the gate's threshold."""
    labels = [f"c={v.level.max_concurrency}\n{v.level.input_len}/{v.level.output_len}" for v in verdicts]
    points = [min(v.level.output_throughput, v.level.total_token_throughput) for v in verdicts]
    below = [p - (v.ci_low if v.ci_low is not None else p) for p, v in zip(points, verdicts, strict=True)]
    above = [(v.ci_high if v.ci_high is not None else p) - p for p, v in zip(points, verdicts, strict=True)]
    colours = {"PASS": "tab:green", "FAIL": "tab:red", "INCONCLUSIVE": "tab:orange"}
    for i, (v, p) in enumerate(zip(verdicts, points, strict=True)):
        ax.errorbar([i], [p], yerr=[[below[i]], [above[i]]], fmt="o", capsize=5, color=colours[v.verdict])
    ax.axhline(verdicts[0].threshold, color="tab:red", linestyle="--", label=f"gate {verdicts[0].threshold:.2f}")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(verdicts)), labels=labels)
    ax.set_ylabel("flaggems / native throughput (95% CI)")
    ax.grid(True, alpha=0.3)
    ax.legend()


def _client(base_url: str, timeout_s: float) -> httpx.AsyncClient:
    # The semaphore bounds connections; an httpx pool limit would queue requests unseen.
    return httpx.AsyncClient(
        base_url=loopback_url(base_url),
        timeout=timeout_s,
        trust_env=False,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
    )


async def _run(
    client: httpx.AsyncClient,
    model: str,
    prompts: list[str],
    output_len: int,
    max_concurrency: int,
    request_rate: float,
    rng: random.Random,
    timeout_s: float,
) -> list[RequestTrace]:
    """Send at `request_rate` (Poisson arrivals; inf = all at once), at most `max_concurrency` in flight."""
    slots = asyncio.Semaphore(max_concurrency)
    gaps = (
        np.random.default_rng(rng.getrandbits(64)).exponential(1 / request_rate, len(prompts))
        if math.isfinite(request_rate)
        else np.zeros(len(prompts))
    )

    async def one(prompt: str) -> RequestTrace:
        async with slots:
            return await _stream_completion(client, model, prompt, output_len, timeout_s)

    tasks = []
    start = time.perf_counter()
    for prompt, arrival in zip(prompts, np.cumsum(gaps), strict=True):
        await asyncio.sleep(max(0.0, start + arrival - time.perf_counter()))
        tasks.append(asyncio.create_task(one(prompt)))
    return list(await asyncio.gather(*tasks))


async def _stream_completion(
    client: httpx.AsyncClient, model: str, prompt: str, output_len: int, timeout_s: float
) -> RequestTrace:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": output_len,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    now = time.perf_counter()
    stream = _Stream(start=now, last=now)
    error = ""
    try:
        async with asyncio.timeout(timeout_s):
            # llama-server drops many requests (a quarter at concurrency 4) that reuse a
            # keep-alive connection which carried a stream: one connection per stream.
            async with client.stream("POST", "/v1/completions", json=body, headers={"Connection": "close"}) as response:
                if response.status_code != 200:
                    await response.aread()
                    error = f"HTTP {response.status_code}: {response.text[:300]}"
                else:
                    async for line in response.aiter_lines():
                        stream.take(line)
    except TimeoutError:
        error = f"no complete response within {timeout_s:g} s"
    except (httpx.HTTPError, json.JSONDecodeError) as err:
        error = f"{type(err).__name__}: {err}"
    if not error and stream.ttft is None:
        error = "the stream carried no token"
    return RequestTrace(
        prompt_len=stream.usage.get("prompt_tokens", 0),
        output_len=stream.usage.get("completion_tokens", len(stream.itl) + 1),
        start=stream.start,
        ttft_s=stream.ttft or 0.0,
        itl_s=stream.itl,
        latency_s=stream.last - stream.start,
        success=not error,
        error=error,
        timings=stream.timings,
    )


@dataclass
class _Stream:
    """What one SSE stream has told us so far, stamped as each chunk arrives."""

    start: float
    last: float  # the latest token chunk: latency ends there, as in vLLM
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    usage: dict = field(default_factory=dict)
    timings: dict | None = None

    def take(self, line: str) -> None:
        data = line.removeprefix("data:").strip()
        if not line.startswith("data:") or data == "[DONE]":
            return
        chunk = json.loads(data)
        now = time.perf_counter()
        # The finish chunk carries no token, only finish_reason, usage and timings.
        if any(c.get("text") for c in chunk.get("choices") or []):
            if self.ttft is None:
                self.ttft = now - self.start
            else:
                self.itl.append(now - self.last)
            self.last = now
        self.usage = chunk.get("usage") or self.usage
        self.timings = chunk.get("timings") or self.timings


async def _server_counter(client: httpx.AsyncClient) -> TokenCount | None:
    """Token count of a text by the server's tokenizer, None when it has no /tokenize."""

    async def count(text: str) -> int:
        # llama-server reads `content`, vLLM reads `prompt`; each ignores the other.
        response = await client.post("/tokenize", json={"content": text, "prompt": text})
        response.raise_for_status()
        return len(response.json()["tokens"])

    try:
        await count("probe")
    except (httpx.HTTPStatusError, KeyError):
        return None
    return count


async def _estimated_counter(client: httpx.AsyncClient, model: str, rng: random.Random, timeout_s: float) -> TokenCount:
    """Chars per token from two probes of different lengths: what the server adds cancels out."""
    short, long = _words(rng, 10), _words(rng, 40)  # long stays well inside any context window
    used = [await _stream_completion(client, model, text, 1, timeout_s) for text in (short, long)]
    if not all(t.success for t in used) or used[1].prompt_len <= used[0].prompt_len:
        raise ServiceError(
            "cannot size prompts: the server has no /tokenize and reports no usage", where=str(client.base_url)
        )
    chars_per_token = (len(long) - len(short)) / (used[1].prompt_len - used[0].prompt_len)

    async def count(text: str) -> int:
        return round(len(text) / chars_per_token)

    return count


def _words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 8))) for _ in range(n))


async def _fit(count: TokenCount, text: str, target: int) -> str:
    """Shortest prefix of `text` with `target` tokens, `text` growing as needed.

    Bisects on characters: one more character changes a count by 0 or +1 in
    practice, so the first prefix reaching `target` has exactly `target` tokens."""
    while await count(text) < target:
        text += " " + text
    lo, hi = 0, len(text)  # count(text[:lo]) < target <= count(text[:hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if await count(text[:mid]) < target else (lo, mid)
    return text[:hi]
