import math

import pytest
from pydantic import TypeAdapter, ValidationError

from flagrelease.perf_metrics import PerfResult, RequestTrace, summarize

SETTINGS = dict(max_concurrency=2, request_rate=math.inf, num_prompts=4, input_len=10, output_len=4)

# Three successes and one failure, times in seconds, chosen so every metric is easy by hand:
#   A: TTFT 0.1, three gaps summing to 0.1, latency 0.2, 4 tokens -> TPOT (0.2-0.1)/3 = 1/30
#   B: one token, so TTFT = latency = 0.3 and no TPOT sample (vLLM leaves output_len <= 1 out)
#   C: TTFT 0.2, two gaps of 0.1, latency 0.4, 3 tokens -> TPOT (0.4-0.2)/2 = 0.1
#   D: failed: counted in `failed`, nowhere else
TRACES = [
    RequestTrace(
        prompt_len=10, output_len=4, start=0.0, ttft_s=0.1, itl_s=[0.02, 0.03, 0.05], latency_s=0.2, success=True
    ),
    RequestTrace(prompt_len=20, output_len=1, start=0.05, ttft_s=0.3, itl_s=[], latency_s=0.3, success=True),
    RequestTrace(prompt_len=30, output_len=3, start=0.1, ttft_s=0.2, itl_s=[0.1, 0.1], latency_s=0.4, success=True),
    RequestTrace(
        prompt_len=40,
        output_len=7,
        start=0.2,
        ttft_s=0.05,
        itl_s=[9.0],
        latency_s=9.0,
        success=False,
        error="RemoteProtocolError",
    ),
]


@pytest.fixture(scope="module")
def result():
    return summarize(TRACES, 0.5, SETTINGS)


def test_counts_and_throughputs(result):
    assert (result.completed, result.failed) == (3, 1)
    assert (result.total_input_tokens, result.total_output_tokens) == (60, 8)
    assert result.duration_s == 0.5
    assert result.request_throughput == pytest.approx(6.0)  # 3 / 0.5
    assert result.output_throughput == pytest.approx(16.0)  # 8 / 0.5
    assert result.total_token_throughput == pytest.approx(136.0)  # (60 + 8) / 0.5


def test_ttft_ms(result):
    # [100, 300, 200]; population std sqrt((100² + 100² + 0) / 3); p99 = 200 + 0.98 * 100
    assert result.mean_ttft_ms == pytest.approx(200.0)
    assert result.median_ttft_ms == pytest.approx(200.0)
    assert result.std_ttft_ms == pytest.approx(81.649658, rel=1e-6)
    assert result.p99_ttft_ms == pytest.approx(298.0)


def test_tpot_ms_leaves_out_single_token_requests(result):
    # [33.333, 100] from A and C; B (one token) would add a 0 and pull the mean to 44.4
    assert result.mean_tpot_ms == pytest.approx(200 / 3)
    assert result.median_tpot_ms == pytest.approx(200 / 3)
    assert result.std_tpot_ms == pytest.approx(100 / 3)
    assert result.p99_tpot_ms == pytest.approx(100 / 3 + 0.99 * 200 / 3)


def test_itl_ms_pools_every_gap(result):
    # [20, 30, 50, 100, 100]; deviations -40 -30 -10 40 40 -> variance 5800 / 5
    assert result.mean_itl_ms == pytest.approx(60.0)
    assert result.median_itl_ms == pytest.approx(50.0)
    assert result.std_itl_ms == pytest.approx(math.sqrt(1160))
    assert result.p99_itl_ms == pytest.approx(100.0)


def test_e2el_ms(result):
    # [200, 300, 400]
    assert result.mean_e2el_ms == pytest.approx(300.0)
    assert result.median_e2el_ms == pytest.approx(300.0)
    assert result.std_e2el_ms == pytest.approx(81.649658, rel=1e-6)
    assert result.p99_e2el_ms == pytest.approx(398.0)


def test_settings_and_traces_are_carried(result):
    assert (result.max_concurrency, result.request_rate, result.num_prompts) == (2, math.inf, 4)
    assert (result.input_len, result.output_len) == (10, 4)
    assert result.traces == TRACES


def test_no_success_reports_zero_like_vllm():
    result = summarize([TRACES[3]], 2.0, SETTINGS)
    assert (result.completed, result.failed, result.total_output_tokens) == (0, 1, 0)
    assert result.mean_ttft_ms == result.p99_itl_ms == result.std_e2el_ms == 0.0
    assert result.request_throughput == 0.0


def test_only_single_token_requests_give_zero_tpot():
    result = summarize([TRACES[1]], 1.0, SETTINGS)
    assert result.mean_tpot_ms == 0.0
    assert result.mean_ttft_ms == pytest.approx(300.0)


def test_rejects_nonpositive_duration():
    with pytest.raises(ValueError, match="positive"):
        summarize(TRACES, 0.0, SETTINGS)


def test_rejects_unknown_setting():
    with pytest.raises(ValidationError):
        summarize(TRACES, 1.0, SETTINGS | {"concurrency": 2})


def test_json_round_trip_keeps_infinite_rate(result):
    adapter = TypeAdapter(list[PerfResult])
    again = adapter.validate_json(adapter.dump_json([result]))
    assert again == [result]
    assert again[0].request_rate == math.inf
