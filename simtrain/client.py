"""A small HTTP client for the gateway, used by the CLI and the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


class GatewayError(RuntimeError):
    pass


class GatewayClient:
    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 10.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def _json(self, response: httpx.Response) -> Any:
        if response.is_error:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text
            raise GatewayError(
                f"{response.request.method} {response.request.url.path}: {response.status_code} {message}"
            )
        return response.json()

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._json(self.http.post("/v1/jobs", json=spec))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/jobs/{job_id}"))

    def report(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/v1/jobs/{job_id}/report"))

    def wait(
        self,
        job_id: str,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the job finishes; return its final record."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s}s")
            time.sleep(poll_s)
