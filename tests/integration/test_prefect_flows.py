"""The flows against a real Prefect API (prefect_test_harness: a temporary server on SQLite)."""

from __future__ import annotations

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.release_cell import release_cell


@pytest.fixture(scope="module")
def prefect_api():
    with prefect_test_harness():
        yield


def test_flow_run_fails_cleanly_on_a_host_that_cannot_build_the_cell(prefect_api, docker_client, tmp_path, monkeypatch):
    """The real flow on the real API: preflight refuses the Ascend cell here; the run is Failed,
    and its record says so."""
    monkeypatch.setenv("FLAGRELEASE_HOME", str(tmp_path))
    state = release_cell(model="qwen3-4b", chip="ascend-a3", push=False, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="cannot build qwen3-4b x ascend-a3 on this host"):
        state.result()
    [record] = (tmp_path / "results" / "qwen3-4b--ascend-a3").glob("*/release.json")
    assert '"status": "failed"' in record.read_text()


def test_the_run_log_keeps_the_traceback_the_console_does_not_show(prefect_api, docker_client, tmp_path, monkeypatch):
    """Handled failures leave the console to the CLI's error block; their tracebacks stay in
    the flow run's log in the Prefect API, where an operator looks for them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    monkeypatch.setenv("FLAGRELEASE_HOME", str(tmp_path))
    state = release_cell(model="qwen3-4b", chip="ascend-a3", push=False, return_state=True)
    assert state.is_failed()
    APILogHandler().flush()  # send what is queued before asking for it
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    tracebacks = [log.message for log in logs if "Traceback (most recent call last)" in log.message]
    assert tracebacks and all("flagrelease.errors.ServiceError: cannot build" in t for t in tracebacks)
