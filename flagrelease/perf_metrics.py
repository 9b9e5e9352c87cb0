"""Serving metrics from per-request traces, as `vllm bench serve` computes them.

Names and definitions follow `calculate_metrics` in vllm/benchmarks/serve.py so a
FlagRelease result can sit next to a `vllm bench serve` JSON for the same shape:
only successful requests count, TPOT = (latency - TTFT) / (output_len - 1) over
requests with output_len > 1, ITL pools every gap of every request, std is the
population std (numpy default), p99 is numpy's linear percentile, and a metric
with no samples reports 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict


class RequestTrace(BaseModel):
    prompt_len: int  # tokens the server reports it prefilled (usage.prompt_tokens)
    output_len: int  # usage.completion_tokens
    start: float  # time.perf_counter() when the request was sent, after any client-side queueing
    ttft_s: float = 0.0
    itl_s: list[float] = []  # gaps between successive content chunks after the first
    latency_s: float = 0.0  # send -> last content chunk
    success: bool
    error: str = ""
    timings: dict[str, Any] | None = None  # llama-server's own accounting, kept for cross-checks


class PerfResult(BaseModel):
    # request_rate=inf must survive a JSON round trip, which plain JSON cannot carry.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    max_concurrency: int
    request_rate: float
    num_prompts: int
    input_len: int
    output_len: int

    duration_s: float
    completed: int
    failed: int
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float

    mean_ttft_ms: float
    median_ttft_ms: float
    std_ttft_ms: float
    p99_ttft_ms: float
    mean_tpot_ms: float
    median_tpot_ms: float
    std_tpot_ms: float
    p99_tpot_ms: float
    mean_itl_ms: float
    median_itl_ms: float
    std_itl_ms: float
    p99_itl_ms: float
    mean_e2el_ms: float
    median_e2el_ms: float
    std_e2el_ms: float
    p99_e2el_ms: float

    traces: list[RequestTrace] = []


def summarize(traces: Iterable[RequestTrace], duration_s: float, settings: dict[str, Any]) -> PerfResult:
    """`settings` carries max_concurrency, request_rate, num_prompts, input_len, output_len."""
    if duration_s <= 0:
        raise ValueError(f"benchmark duration must be positive, got {duration_s}")
    traces = list(traces)
    ok = [t for t in traces if t.success]
    total_input = sum(t.prompt_len for t in ok)
    total_output = sum(t.output_len for t in ok)
    samples = {
        "ttft": [t.ttft_s for t in ok],
        "tpot": [(t.latency_s - t.ttft_s) / (t.output_len - 1) for t in ok if t.output_len > 1],
        "itl": [gap for t in ok for gap in t.itl_s],
        "e2el": [t.latency_s for t in ok],
    }
    stats: dict[str, float] = {}
    for name, seconds in samples.items():
        stats |= _stats_ms(name, seconds)
    return PerfResult(
        **settings,
        duration_s=duration_s,
        completed=len(ok),
        failed=len(traces) - len(ok),
        total_input_tokens=total_input,
        total_output_tokens=total_output,
        request_throughput=len(ok) / duration_s,
        output_throughput=total_output / duration_s,
        total_token_throughput=(total_input + total_output) / duration_s,
        **stats,
        traces=traces,
    )


def _stats_ms(name: str, seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds or [0.0]) * 1000  # vLLM's `values or 0`: no samples reports 0
    return {
        f"mean_{name}_ms": float(np.mean(ms)),
        f"median_{name}_ms": float(np.median(ms)),
        f"std_{name}_ms": float(np.std(ms)),
        f"p99_{name}_ms": float(np.percentile(ms, 99)),
    }
