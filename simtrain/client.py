"""A small HTTP client for the gateway, used by the CLI, the end-to-end tests and the benchmarks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

FINISHED = ("succeeded", "failed", "cancelled")


class GatewayError(RuntimeError):
    """An error answer from the gateway (``status``, ``code`` from its error body), or no answer at all."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None, details: Any = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details or []


class GatewayClient:
    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 10.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise GatewayError(f"cannot reach the gateway at {self.base_url}: {e}") from None
        self._raise_for_error(response)
        return response

    @staticmethod
    def _raise_for_error(response: httpx.Response) -> None:
        if not response.is_error:
            return
        response.read()
        code, details = None, []
        try:
            error = response.json()["error"]
            message, code, details = error["message"], error["code"], error["details"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise GatewayError(
            f"{message} (HTTP {response.status_code})",
            status=response.status_code,
            code=code,
            details=details,
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        return None if response.status_code == 204 else response.json()

    # -- jobs -----------------------------------------------------------------------------------

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/v1/jobs", json=spec, headers=headers)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def jobs(
        self,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        tags: Sequence[str] = (),
        name: str | None = None,
    ) -> dict[str, Any]:
        """A page of jobs, newest first: only those in ``status``, with every one of ``tags``, and whose
        name contains ``name`` (any case), where given."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        if tags:
            params["tag"] = list(tags)
        if name:
            params["name"] = name
        return self._json("GET", "/v1/jobs", params=params)

    def fork(
        self,
        job_id: str,
        changes: dict[str, Any] | None = None,
        init_from_checkpoint: bool = False,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """A new job from ``job_id``'s spec with ``changes`` (a partial spec) deep-merged in; with
        ``init_from_checkpoint``, it starts from that job's checkpoint weights. Returns ``id``, ``status``."""
        body = {"changes": changes or {}, "init_from_checkpoint": init_from_checkpoint}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", f"/v1/jobs/{job_id}/fork", json=body, headers=headers)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def metrics(self, job_id: str, since_step: int = 0) -> list[dict[str, float]]:
        return self._json("GET", f"/v1/jobs/{job_id}/metrics", params={"since_step": since_step})["metrics"]

    def job_logs(self, job_id: str, after: int = 0) -> dict[str, Any]:
        """The job's log lines after seq ``after``: ``lines``, ``next`` (the next ``after``), ``done``."""
        return self._json("GET", f"/v1/jobs/{job_id}/logs", params={"after": after})

    def report(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}/report")

    def report_page(self, job_id: str) -> str:
        """The fit report as a self-contained HTML page."""
        return self._request("GET", f"/v1/jobs/{job_id}/report.html").text

    def generate(self, job_id: str, prompt: str, timeout_s: float = 60.0, **params: Any) -> dict[str, Any]:
        """Ask the job's model (its latest checkpoint) to continue ``prompt``: ``completions``, ``step``.

        ``params``: ``max_new_tokens``, ``temperature``, ``top_k``, ``n``, ``seed`` (None: the default).
        """
        body = {"prompt": prompt} | {k: v for k, v in params.items() if v is not None}
        return self._json("POST", f"/v1/jobs/{job_id}/generate", json=body, timeout=timeout_s)

    def download_checkpoint(self, job_id: str, path: Path) -> int:
        """Save the job's checkpoint to ``path``, streaming; return its size in bytes."""
        try:
            with self.http.stream("GET", f"/v1/jobs/{job_id}/checkpoint", timeout=300) as response:
                self._raise_for_error(response)
                size = 0
                with path.open("wb") as f:
                    for chunk in response.iter_bytes():
                        size += f.write(chunk)
        except httpx.TransportError as e:
            raise GatewayError(f"cannot reach the gateway at {self.base_url}: {e}") from None
        return size

    def events(self, job_id: str, last_event_id: str | None = None) -> Iterator[tuple[str, Any, str | None]]:
        """The job's Server-Sent Events as ``(event, data, id)``, until the server closes the stream."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(10.0, read=60.0)  # the server sends a keep-alive comment well within this
        with self.http.stream(
            "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
        ) as response:
            self._raise_for_error(response)
            event, data, event_id = "message", [], None
            for line in response.iter_lines():
                if not line:
                    if data:
                        yield event, json.loads("\n".join(data)), event_id
                    event, data, event_id = "message", [], None
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        event_id = value

    def follow(
        self,
        job_id: str,
        on_event: Callable[[str, Any], None] | None = None,
        retries: int = 5,
    ) -> dict[str, Any]:
        """Follow the live events to the job's end (reconnecting where a stream broke); return its record."""
        last_id: str | None = None
        failures = 0
        while True:
            try:
                for event, data, event_id in self.events(job_id, last_id):
                    last_id = event_id or last_id
                    failures = 0
                    if on_event:
                        on_event(event, data)
                    if event == "end":
                        return self.job(job_id) if data.get("status") != "deleted" else data
            except (httpx.TransportError, GatewayError) as e:
                if isinstance(e, GatewayError) and e.status is not None and e.status < 500:
                    raise
                failures += 1
                if failures > retries:
                    raise GatewayError(f"lost the event stream of job {job_id}: {e}") from None
            record = self.job(job_id)
            if record["status"] in FINISHED:
                return record
            time.sleep(min(2.0, 0.2 * 2**failures))

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
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s}s")
            time.sleep(poll_s)

    # -- experiments ----------------------------------------------------------------------------

    def submit_experiment(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Queue every variant × seed of an experiment; the answer has its ``id`` and ``jobs``."""
        return self._json("POST", "/v1/experiments", json=spec, timeout=60)

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """The experiment's record, each run's status, and its ``comparison``."""
        return self._json("GET", f"/v1/experiments/{experiment_id}")

    def experiments(
        self, limit: int = 50, tags: Sequence[str] = (), name: str | None = None
    ) -> list[dict[str, Any]]:
        """Experiments newest first: with every one of ``tags``, and a name containing ``name``."""
        params: dict[str, Any] = {"limit": limit, "tag": list(tags)}
        if name:
            params["name"] = name
        return self._json("GET", "/v1/experiments", params=params)["experiments"]

    def cancel_experiment(self, experiment_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/experiments/{experiment_id}/cancel")

    def delete_experiment(self, experiment_id: str) -> None:
        self._request("DELETE", f"/v1/experiments/{experiment_id}")

    def compare(self, job_ids: list[str]) -> dict[str, Any]:
        """The comparison of jobs already run (those differing only in the seed are one variant)."""
        return self._json("POST", "/v1/compare", json={"jobs": job_ids})

    # -- datasets -------------------------------------------------------------------------------

    def modules(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/modules")["modules"]

    def models(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/models")["presets"]

    def datasets(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/datasets")["datasets"]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/datasets/{dataset_id}")

    def dataset_rows(
        self, dataset_id: str, split: str = "train", start: int = 0, count: int = 8, block_size: int = 64
    ) -> dict[str, Any]:
        """Rows start .. start + count of a split as training sees them: each token's ``id``, ``text``,
        ``role`` (trained, masked or padding) and ``special``; ``total_rows`` says how many there are."""
        params = {"split": split, "start": start, "count": count, "block_size": block_size}
        return self._json("GET", f"/v1/datasets/{quote(dataset_id, safe='')}/rows", params=params)

    def sources(self) -> list[dict[str, Any]]:
        """The uploaded source files: ``name``, ``size_bytes``, ``uploaded_at`` (ISO 8601, UTC)."""
        return self._json("GET", "/v1/sources")["sources"]

    def prepare(self, request: dict[str, Any], timeout_s: float = 600) -> dict[str, Any]:
        return self._json("POST", "/v1/datasets", json=request, timeout=timeout_s)

    def upload(self, file: BinaryIO, filename: str, timeout_s: float = 3600) -> dict[str, Any]:
        """Upload a source; the file is streamed from disk, never read whole."""
        headers = {"Content-Type": "application/octet-stream"}
        timeout = httpx.Timeout(timeout_s, connect=10.0)
        return self._json(
            "POST",
            "/v1/sources",
            params={"filename": filename},
            content=file,
            headers=headers,
            timeout=timeout,
        )
