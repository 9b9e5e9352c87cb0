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


def test_a_cell_run_writes_its_full_log_to_run_log(prefect_api, docker_client, tmp_path, monkeypatch):
    """What the console leaves out (the handled failure's traceback, Prefect's state lines)
    is in the run's run.log, beside its stages' progress lines."""
    monkeypatch.setenv("FLAGRELEASE_HOME", str(tmp_path))
    state = release_cell(model="qwen3-4b", chip="ascend-a3", push=False, return_state=True)
    assert state.is_failed()
    [run_dir] = (tmp_path / "results" / "qwen3-4b--ascend-a3").iterdir()
    log = (run_dir / "run.log").read_text()
    assert "cell qwen3-4b--ascend-a3: run " in log and "stage preflight failed after" in log
    assert "Traceback (most recent call last)" in log and "ServiceError: cannot build" in log
    assert "cell qwen3-4b--ascend-a3: failed" in log
    assert '"log": "run.log"' in (run_dir / "release.json").read_text()


def test_a_matrix_run_leaves_the_release_catalog_as_an_artifact(prefect_api, docker_client, tmp_path, monkeypatch):
    """The catalog table (latest qualified release per model x chip, from the ledger) after the run,
    whatever the run's own cells did."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flagrelease.adapters.ledger import Ledger
    from flagrelease.record import ReleaseRecord
    from flagrelease.settings import load_settings
    from flows.release_matrix import release_matrix
    from tests.conftest import ROOT

    monkeypatch.setenv("FLAGRELEASE_HOME", str(tmp_path))
    released = ReleaseRecord.load(ROOT / "tests/data/card/tiny-llama--cpu/release.json")
    Ledger(load_settings().ledger_path).record(released)
    [outcome] = release_matrix(model="qwen3-4b", chip="ascend-a3", push=False)
    assert outcome.status == "failed"
    with get_client(sync_client=True) as client:
        [artifact] = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["release-catalog"]))
        )
    text = str(artifact.data)
    assert released.publish is not None and released.publish.digest in text and "tiny-llama" in text
