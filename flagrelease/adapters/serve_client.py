"""HTTP to a served model: the OpenAI-compatible API, on 127.0.0.1 only."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import httpx

from flagrelease.adapters.loopback import is_loopback


def loopback_url(base_url: str) -> str:
    """Refuse any address but loopback: containers are reached only through ports
    published on 127.0.0.1, never through their bridge address."""
    if not is_loopback(urlparse(base_url).hostname or ""):
        raise ValueError(f"{base_url}: FlagRelease talks to served models on 127.0.0.1 only")
    return base_url.rstrip("/")


class ServeClient:
    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base_url = loopback_url(base_url)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def health(self) -> int | None:
        """HTTP status of /health, None when nothing answers yet."""
        try:
            return self._http.get("/health", timeout=2.0).status_code
        except httpx.HTTPError:
            return None

    def models(self) -> list[str]:
        response = self._http.get("/v1/models")
        response.raise_for_status()
        return [m["id"] for m in response.json().get("data", [])]

    def chat(self, model: str, messages: list[dict[str, str]], **params: Any) -> dict[str, Any]:
        response = self._http.post("/v1/chat/completions", json={"model": model, "messages": messages} | params)
        response.raise_for_status()
        return response.json()
