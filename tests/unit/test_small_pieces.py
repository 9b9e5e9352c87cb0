"""Settings, loopback rule, runtime options: pure logic."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from flagrelease.adapters.serve_client import loopback_url
from flagrelease.errors import ConfigError, GateFailed, ServiceError, ServiceUnavailable
from flagrelease.matrix import load_matrix, select
from flagrelease.naming import base_reference
from flagrelease.settings import BuildSettings
from flagrelease.steps import accuracy
from flagrelease.steps.smoke import run_options
from tests.conftest import ROOT


def test_pip_index_url_never_shows_in_repr_or_dump():
    settings = BuildSettings(pip_index_url=SecretStr("https://user:hunter2@pypi.example/simple"))
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.model_dump_json()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:80"])
def test_loopback_allowed(url):
    assert loopback_url(url) == url


@pytest.mark.parametrize("url", ["http://172.17.0.2:9010", "http://10.0.0.1:80", "http://example.com"])
def test_non_loopback_refused(url):
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        loopback_url(url)


def test_base_mirror_rewrite():
    ref = "quay.io/ascend/cann:8.2.rc1-a3-ubuntu22.04-py3.11"
    assert (
        base_reference(ref, "quay.io=mirror.example.com/quay")
        == "mirror.example.com/quay/ascend/cann:8.2.rc1-a3-ubuntu22.04-py3.11"
    )
    assert base_reference(ref, None) == ref
    assert base_reference("flagrelease/debian-minbase:sid", "quay.io=m/q") == "flagrelease/debian-minbase:sid"
    with pytest.raises(ConfigError, match="SOURCE=TARGET"):
        base_reference(ref, "quay.io")


def test_run_options_mount_weights_read_only_and_take_chip_env(tmp_path):
    cell = select(load_matrix(ROOT / "matrix.yaml"), chip="cpu", model="tiny-llama")[0]
    options = run_options(cell, tmp_path, side="flaggems")
    assert options.volumes == {str(tmp_path.resolve()): {"bind": "/data/weights/tiny-llama", "mode": "ro"}}
    assert options.env == {"OMP_NUM_THREADS": "2", "FLAGRELEASE_SIDE": "flaggems"}
    assert options.port == 9010


class _State:
    """The one thing Prefect's retry condition reads of a failed task run: its result."""

    def __init__(self, error: BaseException | None):
        self.error = error

    def result(self):
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ServiceUnavailable("registry 127.0.0.1:5000 cannot be reached"), True),
        # A refusal repeats itself, whatever words it uses.
        (ServiceError("registry 127.0.0.1:5000 refused: temporarily unavailable, please retry"), False),
        (ServiceError("127.0.0.1:5000/x:2612011000 already exists; release tags are immutable"), False),
        (ValueError("a bug is not retried either"), False),
        (None, False),
    ],
)
def test_push_retry_decides_on_the_error_type_not_its_words(error, retried):
    from flows.release_cell import _retry_push

    assert _retry_push(None, None, _State(error)) is retried


def _record(name: str, message: str, error: BaseException | None = None):
    import logging

    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)


@pytest.mark.parametrize(
    ("record", "shown"),
    [
        (_record("prefect.task_runs", "Task run failed with exception: ...", ServiceError("push refused")), False),
        (_record("prefect.flow_runs", "Encountered exception during execution", GateFailed("no")), False),
        (
            _record(
                "prefect.flow_runs",
                "Finished in state Failed('Flow run encountered an exception: ServiceError: smoke test failed')",
            ),
            False,
        ),
        (
            _record(
                "prefect.task_runs",
                "Finished in state Failed('Task run encountered an exception ServiceUnavailable: registry down')",
            ),
            False,
        ),
        # A bug keeps its traceback and its state line: that is how it gets fixed.
        (_record("prefect.task_runs", "Task run failed with exception: ...", KeyError("pins")), True),
        (
            _record(
                "prefect.flow_runs", "Finished in state Failed('Flow run encountered an exception: KeyError: pins')"
            ),
            True,
        ),
        (_record("prefect.flow_runs", "Finished in state Completed()"), True),
        (_record("prefect.task_runs", "Task run failed with exception: ServiceUnavailable(...) - Retry 1/2"), True),
        # Not Prefect's run loggers: untouched.
        (_record("flagrelease", "whatever", ServiceError("x")), True),
    ],
)
def test_handled_failures_leave_the_console_to_the_cli(record, shown):
    from flows.console_logging import HideHandledFailures

    assert HideHandledFailures().filter(record) is shown


@pytest.mark.parametrize(
    "engine,temperature,fields",
    [
        ("vllm", 0.0, {}),  # greedy: nothing to sample
        ("vllm", 0.6, {"top_p": 0.95}),
        # llama-server truncates by default (top_k 40, min_p 0.05); vLLM does not.
        ("llama_cpp", 0.6, {"top_p": 0.95, "top_k": 0, "min_p": 0.0}),
    ],
)
def test_sampled_answers_draw_from_the_stated_distribution(engine, temperature, fields):
    sampled = accuracy.sampling(engine, temperature, 0.95, "q1", 3)
    assert {k: v for k, v in sampled.items() if k != "seed"} == fields


def test_every_question_and_sample_has_its_own_seed():
    seeds = {accuracy.sampling("vllm", 0.6, 1.0, f"q{q}", s)["seed"] for q in range(40) for s in range(4)}
    assert len(seeds) == 160 and all(0 <= seed < 2**32 for seed in seeds)
    assert accuracy.sampling("vllm", 0.6, 1.0, "q1", 2) == accuracy.sampling("vllm", 0.6, 1.0, "q1", 2)
