"""The SQLite ledger: filters, lookups by run id and image reference, rebuild, upsert."""

from __future__ import annotations

import copy
import sqlite3
from contextlib import closing

import pytest

from flagrelease.adapters.ledger import Ledger
from flagrelease.errors import ConfigError
from flagrelease.record import ReleaseRecord

REGISTRY = "127.0.0.1:5000"


def release(
    run_id: str,
    started: str,
    model: str = "tiny-llama",
    chip: str = "cpu",
    status: str = "released",
    tag: str | None = None,
    digest: str | None = None,
) -> ReleaseRecord:
    """A release record as the pipeline writes it."""
    repository = f"flagrelease/{model}-{chip}"
    record = {
        "run_id": run_id,
        "started": started,
        "cell": f"{model}--{chip}",
        "model": model,
        "chip": chip,
        "status": status,
        "pins": {"flagscale": "0.8.0"},
        "timings": {"bench": 12.5},
        "image": {
            "image_id": f"sha256:{run_id[-6:]:0>64}",
            "repository": repository,
            "tag": tag or "0",
            "labels": {},
            "reused": False,
            "seconds": 1.0,
        },
    }
    if status == "released":
        record["publish"] = {
            "registry": REGISTRY,
            "repository": repository,
            "tags": [tag],
            "digest": digest,
            "seconds": 0.1,
        }
    return ReleaseRecord.model_validate(record)


RECORDS = [
    release("20261201T100000Z-aaaaaa", "2026-12-01T10:00:00.000000Z", tag="2612011000", digest="sha256:" + "a" * 64),
    # Written with an offset: still sorts by instant (09:30 UTC), not by text.
    release("20261201T093000Z-bbbbbb", "2026-12-01T11:30:00+02:00", tag="2612010930", digest="sha256:" + "b" * 64),
    release("20261201T120000Z-cccccc", "2026-12-01T12:00:00Z", status="failed"),
    release(
        "20261201T110000Z-dddddd", "2026-12-01T11:00:00Z", chip="ascend", tag="2612011100", digest="sha256:" + "d" * 64
    ),
    release(
        "20261201T130000Z-eeeeee",
        "2026-12-01T13:00:00Z",
        model="qwen3-4b",
        tag="2612011300",
        digest="sha256:" + "e" * 64,
    ),
]


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
    for record in RECORDS:
        ledger.record(record)
    return ledger


def run_ids(rows) -> list[str]:
    return [row.run_id for row in rows]


def test_list_is_newest_first(ledger):
    assert run_ids(ledger.list()) == [
        "20261201T130000Z-eeeeee",
        "20261201T120000Z-cccccc",
        "20261201T110000Z-dddddd",
        "20261201T100000Z-aaaaaa",
        "20261201T093000Z-bbbbbb",
    ]


def test_list_filters(ledger):
    assert run_ids(ledger.list(model="tiny-llama", chip="cpu")) == [
        "20261201T120000Z-cccccc",
        "20261201T100000Z-aaaaaa",
        "20261201T093000Z-bbbbbb",
    ]
    assert run_ids(ledger.list(chip="ascend")) == ["20261201T110000Z-dddddd"]
    assert run_ids(ledger.list(model="qwen3-4b")) == ["20261201T130000Z-eeeeee"]
    assert run_ids(ledger.list(chip="cpu", qualified=True)) == [
        "20261201T130000Z-eeeeee",
        "20261201T100000Z-aaaaaa",
        "20261201T093000Z-bbbbbb",
    ]
    assert run_ids(ledger.list(qualified=False)) == ["20261201T120000Z-cccccc"]
    assert ledger.list(model="no-such-model") == []


def test_row_fields(ledger):
    row = ledger.list(chip="ascend")[0]
    assert (row.cell, row.model, row.chip, row.status) == ("tiny-llama--ascend", "tiny-llama", "ascend", "released")
    assert (row.registry, row.repository, row.tags) == (REGISTRY, "flagrelease/tiny-llama-ascend", ("2612011100",))
    assert row.digest == "sha256:" + "d" * 64
    assert row.image_id == "sha256:" + "0" * 58 + "dddddd"
    assert row.pins == {"flagscale": "0.8.0"}
    assert row.started.isoformat() == "2026-12-01T11:00:00+00:00"


def test_latest_qualified_skips_failed_runs(ledger):
    assert ledger.latest_qualified("tiny-llama", "cpu").run_id == "20261201T100000Z-aaaaaa"
    assert ledger.latest_qualified("qwen3-4b", "ascend") is None


def test_show_by_run_id_returns_the_whole_record(ledger):
    assert ledger.show("20261201T120000Z-cccccc") == RECORDS[2]
    assert ledger.show("20261201T100000Z-aaaaaa").timings == {"bench": 12.5}


@pytest.mark.parametrize(
    "ref",
    [
        "flagrelease/tiny-llama-cpu:2612010930",
        f"{REGISTRY}/flagrelease/tiny-llama-cpu:2612010930",
        "flagrelease/tiny-llama-cpu@sha256:" + "b" * 64,
        f"{REGISTRY}/flagrelease/tiny-llama-cpu@sha256:" + "b" * 64,
    ],
)
def test_show_by_image_reference(ledger, ref):
    assert ledger.show(ref).run_id == "20261201T093000Z-bbbbbb"


@pytest.mark.parametrize(
    "ref",
    [
        "20261201T999999Z-zzzzzz",
        "flagrelease/tiny-llama-cpu:1999999999",
        # Right tag and digest, wrong repository: never another cell's release.
        "flagrelease/tiny-llama-ascend:2612010930",
        "flagrelease/tiny-llama-ascend@sha256:" + "b" * 64,
        f"{REGISTRY}/flagrelease/tiny-llama-cpu",
    ],
)
def test_show_unknown_ref_is_a_config_error(ledger, ref):
    with pytest.raises(ConfigError, match="no release"):
        ledger.show(ref)


def test_shared_digest_shows_the_newest_run(ledger):
    again = release("20261201T140000Z-ffffff", "2026-12-01T14:00:00Z", tag="2612011400", digest="sha256:" + "a" * 64)
    ledger.record(again)
    assert ledger.show("flagrelease/tiny-llama-cpu@sha256:" + "a" * 64).run_id == again.run_id
    assert ledger.show("flagrelease/tiny-llama-cpu:2612011000").run_id == "20261201T100000Z-aaaaaa"


def test_upsert_is_idempotent_and_replaces(ledger):
    before = ledger.list()
    ledger.record(RECORDS[0])
    ledger.record(copy.deepcopy(RECORDS[0]))
    assert ledger.list() == before

    retagged = copy.deepcopy(RECORDS[0])
    retagged.publish.tags = ["2612011001"]
    ledger.record(retagged)
    assert len(ledger.list()) == len(RECORDS)
    assert ledger.show("flagrelease/tiny-llama-cpu:2612011001").run_id == retagged.run_id
    with pytest.raises(ConfigError):
        ledger.show("flagrelease/tiny-llama-cpu:2612011000")


def test_rebuild_equals_the_original(ledger, tmp_path):
    fresh = Ledger(tmp_path / "fresh.sqlite")
    fresh.record(release("20261130T000000Z-stale0", "2026-11-30T00:00:00Z", tag="2611300000", digest="sha256:0"))
    fresh.rebuild(reversed(RECORDS))
    assert fresh.list() == ledger.list()
    assert [fresh.show(r.run_id) for r in RECORDS] == RECORDS
    with pytest.raises(ConfigError):
        fresh.show("flagrelease/tiny-llama-cpu:2611300000")


def test_rebuild_with_a_bad_record_keeps_the_ledger(ledger):
    before = ledger.list()

    def records():  # as an artifact store yields them: a malformed one stops the rebuild midway
        yield RECORDS[0]
        yield ReleaseRecord.parse('{"run_id": "20261201T150000Z-broken", "cell": "x--y"}', "release.json")

    with pytest.raises(ConfigError, match="invalid release record: started is required"):
        ledger.rebuild(records())
    assert ledger.list() == before


def test_ledger_survives_reopening(ledger):
    assert Ledger(ledger.path).list() == ledger.list()
    with closing(sqlite3.connect(ledger.path)) as conn:
        assert conn.execute("SELECT count(*) FROM releases").fetchone() == (len(RECORDS),)
