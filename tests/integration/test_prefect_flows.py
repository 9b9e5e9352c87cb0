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
