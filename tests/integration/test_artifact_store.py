"""Artifact stores against a real S3 API: `moto_server` on a free loopback port.

S3 being down, missing its bucket or refusing access must leave the release with
its local copy and a result that says what failed, never with an exception; the
AWS secret must not leak into anything the stores return or print.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import boto3.session
import pytest

from flagrelease.adapters.artifact_store import (
    LocalStore,
    S3Store,
    publish_artifacts,
    store_from_settings,
)
from flagrelease.adapters.ledger import Ledger
from flagrelease.errors import ConfigError, ServiceError
from flagrelease.record import ReleaseRecord
from tests.conftest import free_port
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, start_moto, stop


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    proc, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    yield url
    stop(proc)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Dummy credentials for this test only; no profile or config file from the host."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


def admin_client(service: str, url: str):
    """The test's own client; the dummy credentials are given, not read from the environment."""
    return boto3.session.Session().client(
        service, endpoint_url=url, region_name=REGION, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY
    )


@pytest.fixture
def s3(moto):
    return admin_client("s3", moto)


@pytest.fixture
def bucket(s3):
    name = f"flagrelease-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def make_run(
    results: Path, run_id: str, cell: str = "tiny-llama--cpu", status: str = "released"
) -> tuple[Path, ReleaseRecord]:
    """A run directory as the pipeline leaves it: the record and the files beside it."""
    model, chip = cell.split("--")
    record = {
        "run_id": run_id,
        "started": f"2026-12-01T{run_id[9:11]}:{run_id[11:13]}:00Z",
        "cell": cell,
        "model": model,
        "chip": chip,
        "status": status,
        "pins": {"flagscale": "0.8.0"},
        "image": {
            "image_id": "sha256:" + "1" * 64,
            "repository": f"flagrelease/{cell}",
            "tag": run_id[2:8],
            "labels": {},
            "reused": False,
            "seconds": 1.0,
        },
        "publish": {
            "registry": "127.0.0.1:5000",
            "repository": f"flagrelease/{cell}",
            "tags": [run_id[2:8]],
            "digest": "sha256:" + run_id[-1] * 64,
            "seconds": 0.1,
        },
    }
    run_dir = results / cell / run_id
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "release.json").write_text(json.dumps(record, indent=2))
    record = ReleaseRecord.load(run_dir)
    (run_dir / "smoke.log").write_text("ready\n")
    (run_dir / "perf.json").write_text('{"run_id": "not a record"}')
    (run_dir / "perf.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (run_dir / "logs" / "build.log").write_text("built\n")
    return run_dir, record


RUN_FILES = ["logs/build.log", "perf.json", "perf.png", "smoke.log", "release.json"]


def assert_no_secret(*things) -> None:
    for thing in things:
        assert SECRET_KEY not in repr(thing) and SECRET_KEY not in str(thing)


def down_s3(bucket: str = "flagrelease") -> S3Store:
    """Nothing listens on a fresh free port: connection refused, once, at once."""
    return S3Store(
        bucket,
        "releases",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region=REGION,
        connect_timeout=1,
        max_attempts=1,
    )


def test_publish_to_local_and_s3(tmp_path, moto, s3, bucket):
    run_dir, record = make_run(tmp_path / "results", "20261201T100000Z-aaaaa1")
    stores = store_from_settings(f"s3://{bucket}/flagos/releases/", moto, tmp_path / "store")

    results = publish_artifacts(run_dir, stores)

    # The record goes last: a store holding a run's release.json holds all of its files.
    keys = [f"tiny-llama--cpu/20261201T100000Z-aaaaa1/{name}" for name in RUN_FILES]
    local, remote = results
    assert (local.store, local.ok, list(local.keys), local.error) == (str(tmp_path / "store"), True, keys, None)
    assert (remote.store, remote.ok, list(remote.keys), remote.error) == (
        f"s3://{bucket}/flagos/releases",
        True,
        keys,
        None,
    )
    assert remote.uris[0] == f"s3://{bucket}/flagos/releases/tiny-llama--cpu/20261201T100000Z-aaaaa1/logs/build.log"
    for name in RUN_FILES:
        original = (run_dir / name).read_bytes()
        key = f"tiny-llama--cpu/20261201T100000Z-aaaaa1/{name}"
        assert (tmp_path / "store" / key).read_bytes() == original
        assert s3.get_object(Bucket=bucket, Key=f"flagos/releases/{key}")["Body"].read() == original
        assert all(store.get(key) == original for store in stores)
    png = s3.head_object(Bucket=bucket, Key=f"flagos/releases/{keys[2]}")
    assert png["ContentType"] == "image/png"
    assert [store.list_records() for store in stores] == [[record], [record]]
    assert_no_secret(results, stores, *stores, *(r.error for r in results))


def test_list_records_from_s3_rebuilds_the_ledger(tmp_path, moto, s3, bucket):
    runs = [
        make_run(tmp_path / "results", "20261201T100000Z-aaaaa1"),
        make_run(tmp_path / "results", "20261201T110000Z-bbbbb2", status="failed"),
        make_run(tmp_path / "results", "20261201T120000Z-ccccc3", cell="tiny-llama--ascend"),
    ]
    store = S3Store(bucket, "", endpoint_url=moto, region=REGION)
    for run_dir, _ in runs:
        assert publish_artifacts(run_dir, [store])[0].ok
    # Not a record: a JSON file named release.json outside the <cell>/<run_id>/ layout.
    s3.put_object(Bucket=bucket, Key="release.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="notes/release.json", Body=b"{}")

    records = store.list_records()

    assert sorted(records, key=lambda r: r.run_id) == [record for _, record in runs]
    expected = Ledger(tmp_path / "expected.sqlite")
    for _, record in runs:
        expected.record(record)
    rebuilt = Ledger(tmp_path / "rebuilt.sqlite")
    rebuilt.rebuild(records)
    assert rebuilt.list() == expected.list()
    assert [row.run_id for row in rebuilt.list()] == [
        "20261201T120000Z-ccccc3",
        "20261201T110000Z-bbbbb2",
        "20261201T100000Z-aaaaa1",
    ]
    assert rebuilt.latest_qualified("tiny-llama", "cpu").run_id == "20261201T100000Z-aaaaa1"
    assert rebuilt.show("flagrelease/tiny-llama--ascend:261201") == runs[2][1]


def test_s3_down_keeps_the_local_copy(tmp_path):
    run_dir, record = make_run(tmp_path / "results", "20261201T100000Z-aaaaa1")
    local, remote = LocalStore(tmp_path / "store"), down_s3()

    started = time.monotonic()
    results = publish_artifacts(run_dir, [local, remote])

    assert time.monotonic() - started < 10
    assert results[0].ok and len(results[0].keys) == len(RUN_FILES)
    assert local.list_records() == [record]
    assert (results[1].store, results[1].ok, results[1].keys) == ("s3://flagrelease/releases", False, ())
    assert "S3 unavailable at http://127.0.0.1:" in results[1].error
    assert "where: s3://flagrelease/releases/tiny-llama--cpu/20261201T100000Z-aaaaa1/logs/build.log" in results[1].error
    with pytest.raises(ServiceError, match="S3 unavailable") as raised:
        remote.list_records()
    assert_no_secret(results, remote, raised.value)


def test_missing_bucket_keeps_the_local_copy(tmp_path, moto):
    run_dir, record = make_run(tmp_path / "results", "20261201T100000Z-aaaaa1")
    stores = store_from_settings("s3://flagrelease-no-such-bucket", moto, tmp_path / "store")

    local, remote = publish_artifacts(run_dir, stores)

    assert local.ok and stores[0].list_records() == [record]
    assert not remote.ok and remote.keys == ()
    assert "S3 refused: NoSuchBucket" in remote.error
    assert "FLAGRELEASE_S3_URL" in remote.error
    with pytest.raises(ServiceError, match="NoSuchBucket"):
        stores[1].get("tiny-llama--cpu/20261201T100000Z-aaaaa1/release.json")
    assert_no_secret(local, remote, stores)


@pytest.fixture(scope="module")
def moto_with_auth(tmp_path_factory):
    """moto enforcing IAM: after three free calls (bucket, user, key) every request is checked."""
    proc, url = start_moto(tmp_path_factory.mktemp("moto-auth") / "moto.log", INITIAL_NO_AUTH_ACTION_COUNT="3")
    admin_client("s3", url).create_bucket(Bucket="flagrelease-locked")
    iam = admin_client("iam", url)
    iam.create_user(UserName="no-rights")
    key = iam.create_access_key(UserName="no-rights")["AccessKey"]
    yield url, key["AccessKeyId"], key["SecretAccessKey"]
    stop(proc)


def test_access_denied_keeps_the_local_copy(tmp_path, monkeypatch, moto_with_auth):
    url, key_id, secret = moto_with_auth
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    run_dir, _ = make_run(tmp_path / "results", "20261201T100000Z-aaaaa1")
    stores = store_from_settings("s3://flagrelease-locked/releases", url, tmp_path / "store")

    local, remote = publish_artifacts(run_dir, stores)

    assert local.ok and not remote.ok
    assert "S3 refused: AccessDenied" in remote.error
    assert secret not in repr((local, remote, stores)) and secret not in str((local, remote))


def test_local_store_already_holding_the_run(tmp_path):
    """The default local root is the results directory: publishing there copies nothing onto itself."""
    run_dir, record = make_run(tmp_path / "results", "20261201T100000Z-aaaaa1")
    [result] = publish_artifacts(run_dir, [LocalStore(tmp_path / "results")])
    assert result.ok and len(result.keys) == len(RUN_FILES)
    assert ReleaseRecord.load(run_dir) == record


def test_publish_needs_a_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="no release.json"):
        publish_artifacts(tmp_path, [LocalStore(tmp_path / "store")])


def test_store_from_settings_without_s3(tmp_path):
    [store] = store_from_settings(None, "http://127.0.0.1:1", tmp_path)
    assert isinstance(store, LocalStore) and store.root == tmp_path


@pytest.mark.parametrize(
    "url, location",
    [
        ("s3://flagos-releases", "s3://flagos-releases"),
        ("s3://flagos-releases/", "s3://flagos-releases"),
        ("s3://flagos.releases/a/b/", "s3://flagos.releases/a/b"),
    ],
)
def test_s3_url(tmp_path, url, location):
    assert store_from_settings(url, None, tmp_path)[1].location == location


@pytest.mark.parametrize(
    "url",
    [
        "flagos-releases/prefix",
        "http://flagos-releases/prefix",
        "s3://",
        "s3:///prefix",
        "s3://Flagos_Releases/prefix",
        "s3://flagos-releases/prefix?versionId=1",
    ],
)
def test_malformed_s3_url_names_the_setting(tmp_path, url):
    with pytest.raises(ConfigError, match="not an s3://BUCKET/PREFIX URL") as raised:
        store_from_settings(url, None, tmp_path)
    assert raised.value.where == "FLAGRELEASE_S3_URL"


def test_credentials_in_the_s3_url_are_refused_and_not_echoed(tmp_path):
    with pytest.raises(ConfigError, match="must not carry credentials") as raised:
        store_from_settings(f"s3://{ACCESS_KEY}:{SECRET_KEY}@flagos-releases/x", None, tmp_path)
    assert raised.value.where == "FLAGRELEASE_S3_URL"
    assert_no_secret(raised.value)
