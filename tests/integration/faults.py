"""What every fault-injection test checks afterwards, in one place (tests/integration/test_faults.py).

A fault run has a state directory, a registry namespace and secrets of its own, so that
what it left is found by its own labels and names, never by looking at everything on a
dockerd or a registry that other tests (and other engineers' runs) share.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

from pydantic import SecretStr

from flagrelease.adapters import docker_engine
from flagrelease.adapters.artifact_store import S3Store
from flagrelease.adapters.cell_lock import home_id
from flagrelease.adapters.ledger import Ledger
from flagrelease.adapters.registry import RegistryClient
from flagrelease.adapters.registry_auth import RegistryCredentials
from flagrelease.naming import is_release_tag
from flagrelease.record import RECORD_FILE, ReleaseRecord
from flagrelease.steps.publish import STAGING_PREFIX
from tests.conftest import CLI, ROOT, _cli_env, shipped_matrix, write_matrix

# Records of runs that ended: the ledger must hold exactly these (interrupted runs do not
# report: nothing is uploaded while the user is stopping us).
REPORTED = {"released", "built", "gated", "failed", "unchanged"}
CELL = ("--model", "tiny-llama", "--chip", "cpu")


@dataclass
class FaultRun:
    """One injected fault's world: its FLAGRELEASE_HOME, its matrix (own registry namespace,
    accuracy-only bench) and the secrets that must appear nowhere."""

    root: Path
    registry: str
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    namespace: str = field(default_factory=lambda: f"fault-{uuid.uuid4().hex[:10]}")

    def __post_init__(self) -> None:
        data = shipped_matrix()
        # Accuracy only: identical stacks answer alike at temperature 0, so the gate passes on
        # a busy machine and a cell reaches its push seconds after its smoke test.
        data["models"]["tiny-llama"]["bench"]["perf"] = None
        data["release"]["namespace"] = self.namespace
        write_matrix(self.root, data)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def matrix(self) -> Path:
        return self.root / "matrix.yaml"

    def args(self, *extra: str) -> list[str]:
        return ["build", *CELL, "--matrix", str(self.matrix), "--registry", self.registry, "--local", *extra]

    def run(self, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [CLI, *self.args(*extra)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_cli_env(self.home, self.env),
            cwd=ROOT,
        )

    def start(self, *extra: str, command: list[str] | None = None, log: str = "run.log") -> subprocess.Popen:
        """The release in a process group of its own (as a shell job), output to `log`."""
        with (self.root / log).open("w") as out:
            return subprocess.Popen(
                [*(command or [CLI]), *self.args(*extra)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_cli_env(self.home, self.env),
                cwd=ROOT,
                start_new_session=True,
            )

    def records(self) -> list[ReleaseRecord]:
        return [ReleaseRecord.load(p) for p in sorted(self.home.glob(f"results/*/*/{RECORD_FILE}"))]

    def record(self) -> ReleaseRecord:
        [record] = self.records()
        return record


def check_invariants(
    run: FaultRun,
    docker_client,
    output: str,
    *,
    exit_code: int,
    returncode: int | None,
    s3: S3Store | None = None,
    login: tuple[str, str] | None = None,
) -> None:
    """After any fault: the documented exit code and no traceback; no container of the run;
    no partial or unreleased tag in the registry (read with `login` when it needs one);
    ledger and artifact stores agree; the run's secrets nowhere."""
    assert returncode == exit_code, f"exit {returncode}, expected {exit_code}:\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]
    _no_containers(run, docker_client)
    _registry_holds_only_releases(run, login)
    _ledger_agrees_with_the_stores(run, s3)
    _secrets_nowhere(run, output)


def _no_containers(run: FaultRun, docker_client) -> None:
    """Found by the run's own labels: its state directory's id, and each recorded run id."""
    labels = [f"{docker_engine.HOME_LABEL}={home_id(run.home)}"]
    labels += [f"{docker_engine.OWNER_LABEL}={r.run_id}" for r in run.records()]
    assert [name for label in labels for name in containers(docker_client, label)] == []


def containers(docker_client, label: str) -> list[str]:
    """Names of the containers with `label` (listed without inspecting each: one may go meanwhile)."""
    found = docker_client.containers.list(all=True, sparse=True, filters={"label": label})
    return [c.attrs["Names"][0].lstrip("/") for c in found]


def _registry_holds_only_releases(run: FaultRun, login: tuple[str, str] | None) -> None:
    """Every release tag of the run's namespace belongs to a record that says released, with
    the digest the registry serves; no staging tag; every key tag marks such a release."""
    released = {
        (r.publish.repository, r.publish.tags[0]): r.publish.digest
        for r in run.records()
        if r.status == "released" and r.publish
    }
    creds = RegistryCredentials(username=login[0], password=SecretStr(login[1])) if login else None
    with RegistryClient(run.registry, creds) as api:  # HTTP basic or token auth, whichever the registry asks
        ours = [r for r in _catalog(api) if r.startswith(f"{run.namespace}/")]
        tags = {r: api.tags(r) for r in ours}
        digests = {(r, t): api.manifest_digest(r, t) for r in ours for t in tags[r]}
    released_digests = set(released.values())
    for repository in ours:
        found = tags[repository]
        assert not [t for t in found if t.startswith(STAGING_PREFIX)], f"staging tags left in {repository}: {found}"
        for tag in filter(is_release_tag, found):
            assert released.get((repository, tag)) == digests[repository, tag], f"{repository}:{tag} is no release"
        if "-stack-" in repository:
            continue  # a chip stack's key tag marks the stack, not a release
        for tag in (t for t in found if t.startswith("key-")):
            assert digests[repository, tag] in released_digests, f"{repository}:{tag} marks no recorded release"


def _catalog(api: RegistryClient) -> list[str]:
    """Every repository, page by page (the registry serves at most 1000 per page)."""
    found: list[str] = []
    url: str | None = f"http://{api.registry}/v2/_catalog?n=1000"
    while url:
        response = api.oras.do_request(url)
        response.raise_for_status()
        found += response.json().get("repositories") or []
        url = response.links.get("next", {}).get("url")
        url = urljoin(f"http://{api.registry}/", url) if url else None
    return found


def _ledger_agrees_with_the_stores(run: FaultRun, s3: S3Store | None) -> None:
    local = {r.run_id: r.status for r in run.records()}
    ledger_path = run.home / "ledger.sqlite"
    ledger = {row.run_id: row.status for row in Ledger(ledger_path).list()} if ledger_path.exists() else {}
    assert ledger == {k: v for k, v in local.items() if v in REPORTED}
    assert not {v for v in local.values()} - REPORTED - {"interrupted"}, f"a run left a record mid-way: {local}"
    if s3 is not None:
        uploaded = {r.run_id: r.status for r in s3.list_records()}
        assert uploaded.items() <= local.items()


def _secrets_nowhere(run: FaultRun, output: str) -> None:
    for secret in run.secrets:
        assert secret not in output
        for path in run.home.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), f"a secret in {path}"


def registry_uploads(root: Path) -> bool:
    """Whether a LocalRegistry rooted at `root` has started receiving a push: layer bytes in an
    upload, or a layer already linked into a repository. The registry stage's push probe starts
    and cancels an upload too, which leaves an empty upload directory: neither of these."""
    repositories = root / "data/docker/registry/v2/repositories"
    for depth in ("*/*", "*/*/*"):
        if any(repositories.glob(f"{depth}/_layers/sha256/*")):
            return True
        for data in repositories.glob(f"{depth}/_uploads/*/data"):
            try:
                if data.stat().st_size > 0:
                    return True
            except FileNotFoundError:  # committed meanwhile: the layer is linked, seen next time
                continue
    return False
