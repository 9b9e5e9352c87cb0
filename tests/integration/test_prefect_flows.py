"""The flows against a real Prefect API (prefect_test_harness: a temporary server on SQLite)."""

from __future__ import annotations

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.deployments import deployments
from flows.release_cell import release_cell
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def prefect_api():
    with prefect_test_harness():
        yield


def test_one_nightly_deployment_per_cell(prefect_api):
    found = deployments(ROOT / "matrix.yaml", chip="ascend")
    assert sorted(d.name for d in found) == sorted(
        f"{m}--{c}"
        for m in ("qwen3-4b", "qwen3-8b", "qwen3-0.6b")
        for c in ("ascend-a2", "ascend-a3", "ascend-a3-cann83")
    )
    one = next(d for d in found if d.name == "qwen3-4b--ascend-a3")
    assert one.parameters["chip"] == "ascend-a3" and one.parameters["model"] == "qwen3-4b"
    assert one.schedules[0].schedule.cron == "0 2 * * *"


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
