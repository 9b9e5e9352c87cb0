"""A real registry on loopback (Debian's `docker-registry`, distribution v2).

`flagrelease build` starts one when no --registry is given, so a fresh machine
can release end to end; the test suite starts its own: anonymous, with htpasswd (HTTP basic)
auth, with token auth (`token`: the `auth: token` section naming a token service's realm,
service, issuer and root certificate bundle, the protocol of Harbor, Docker Hub and Quay),
and read-only ones (they answer the /v2/ ping but refuse every upload).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from flagrelease.errors import ServiceError


class LocalRegistry:
    def __init__(
        self,
        root: Path,
        port: int,
        htpasswd: Path | None = None,
        readonly: bool = False,
        token: dict[str, str] | None = None,
    ):
        self.root = root
        self.port = port
        self.htpasswd = htpasswd
        self.token = token
        self.readonly = readonly
        self.address = f"127.0.0.1:{port}"
        self._proc: subprocess.Popen | None = None

    def answering(self) -> bool:
        try:
            return httpx.get(f"http://{self.address}/v2/", timeout=1.0).status_code in (200, 401)
        except httpx.HTTPError:
            return False

    def start(self, *, detach: bool = False) -> LocalRegistry:
        """Start the registry unless one already answers there; wait until it does."""
        if self.answering():
            return self
        binary = shutil.which("docker-registry")
        if binary is None:
            raise ServiceError(
                "no registry given and `docker-registry` is not installed to start a local one",
                fix="apt-get install -y docker-registry (scripts/bootstrap), or pass --registry HOST:PORT",
            )
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(yaml.safe_dump(self._config()))
        with open(self.root / "registry.log", "ab") as log:  # the child keeps its own copy
            self._proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.answering():
                return self
            if self._proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = (self.root / "registry.log").read_text(errors="replace")[-800:]
        self.stop()
        raise ServiceError(
            f"local registry on {self.address} did not start:\n{tail}",
            fix=f"free port {self.port} or pass --registry HOST:PORT",
        )

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.address},
        }
        if self.readonly:
            config["storage"]["maintenance"] = {"readonly": {"enabled": True}}
        if self.htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "flagrelease", "path": str(self.htpasswd)}}
        if self.token is not None:
            config["auth"] = {"token": self.token}
        return config
