"""Asking a job's model through Redis: the gateway (no torch) puts a request, a generate server answers.

Keys (under the configured prefix):
  ``generate:requests``        a list of request JSON: the gateway LPUSHes, a generate server BRPOPs
  ``generate:reply:<id>``      a list holding the one reply JSON to request ``<id>``, expiring soon after
  ``generate:servers``         a sorted set of the generate servers' names, scored by when their
                               heartbeat runs out (epoch seconds): the live ones score in the future

A request: ``{"id", "job_id", "prompt", "max_new_tokens", "temperature", "top_k", "n", "seed", "deadline"}``
(``deadline``: epoch seconds after which no one waits for the answer, so a server skips it). A reply:
``{"ok": true, "step", "completions": [{"text", "tokens", "stopped"}], "seconds"}`` (with ``"context":
{"text", "passages"}``, the passages put before the prompt, for a model trained on a retrieval dataset, or
``"note"`` saying why they are missing), or ``{"ok": false,
"code", "message"}`` with ``code`` one of ``no_checkpoint``, ``bad_checkpoint``
(unreadable, or without a tokenizer), ``bad_prompt``, ``failed``.
The JSON and the key names are the contract, like the job queue's: any Redis client can serve requests.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis
from pydantic import BaseModel, Field

MAX_NEW_TOKENS = 512
MAX_SAMPLES = 8
MAX_PROMPT_CHARS = 2000
REPLY_TTL_S = 60


class GenerateRequest(BaseModel):
    """What to ask a job's model; the caps keep one request from holding a generate server for long."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="The text to continue")
    max_new_tokens: int = Field(100, ge=1, le=MAX_NEW_TOKENS, description="Tokens to generate per answer")
    temperature: float = Field(1.0, gt=0, le=100, description="Above 1 more varied, below 1 more predictable")
    top_k: int | None = Field(None, ge=1, description="Sample among the K likeliest tokens only (1: greedy)")
    n: int = Field(1, ge=1, le=MAX_SAMPLES, description="How many answers to draw")
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1, description="Seed the sampling: the same answers again"
    )

    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "example": {"prompt": "At noon, Ada", "max_new_tokens": 80, "temperature": 0.8}
        },
    }


class NoAnswer(RuntimeError):
    """No generate server answered in time; the message says whether one took the request at all."""


class GenerateQueue:
    def __init__(self, client: redis.Redis, prefix: str = "simtrain:"):
        self.r = client
        self.prefix = prefix
        self.requests = f"{prefix}generate:requests"
        self.server_set = f"{prefix}generate:servers"

    @classmethod
    def from_url(cls, url: str, prefix: str = "simtrain:", wait_s: float = 30.0) -> GenerateQueue:
        """A queue whose socket outwaits a blocking read of ``wait_s``."""
        client = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=wait_s + 10, socket_connect_timeout=5
        )
        return cls(client, prefix)

    def _reply_key(self, request_id: str) -> str:
        return f"{self.prefix}generate:reply:{request_id}"

    # -- the gateway's side -----------------------------------------------------------------------

    def servers(self) -> list[str]:
        """The names of the generate servers whose heartbeat has not run out."""
        return sorted(self.r.zrangebyscore(self.server_set, time.time(), "+inf"))

    def ask(self, job_id: str, request: GenerateRequest, timeout_s: float) -> dict[str, Any]:
        """Put the request and wait up to ``timeout_s`` for its reply; NoAnswer if none comes."""
        request_id = uuid.uuid4().hex
        payload = json.dumps(
            {"id": request_id, "job_id": job_id, **request.model_dump(), "deadline": time.time() + timeout_s}
        )
        self.r.lpush(self.requests, payload)
        got = self.r.blpop([self._reply_key(request_id)], timeout=timeout_s)
        if got is not None:
            return json.loads(got[1])
        if self.r.lrem(self.requests, 1, payload):  # still there: no server took it
            raise NoAnswer(
                f"no generate server took the request within {timeout_s:g}s: start one with "
                "`python -m trainer_service.generate_server` (`simtrain up` starts one)"
            )
        raise NoAnswer(
            f"a generate server took the request but did not answer within {timeout_s:g}s; "
            "ask for fewer or shorter answers, or try again when it is less busy"
        )

    # -- the generate server's side ---------------------------------------------------------------

    def take(self, block_s: float = 1.0) -> dict[str, Any] | None:
        """The oldest request still worth answering (its asker still waits), or None after ``block_s``."""
        deadline = time.monotonic() + block_s
        while (left := deadline - time.monotonic()) > 0:
            got = self.r.brpop([self.requests], timeout=max(left, 0.01))
            if got is None:
                return None
            try:
                request = json.loads(got[1])
                if request["deadline"] > time.time():
                    return request
            except (ValueError, KeyError, TypeError):
                continue  # not a request this contract makes: dropped (no one can be told)
        return None

    def reply(self, request_id: str, reply: dict[str, Any]) -> None:
        key = self._reply_key(request_id)
        with self.r.pipeline() as p:
            p.rpush(key, json.dumps(reply))
            p.expire(key, REPLY_TTL_S)
            p.execute()

    def heartbeat(self, name: str, ttl_s: float) -> None:
        """Say ``name`` is alive for ``ttl_s`` more seconds (and forget servers long gone)."""
        now = time.time()
        with self.r.pipeline() as p:
            p.zadd(self.server_set, {name: now + ttl_s})
            p.zremrangebyscore(self.server_set, "-inf", now - 3600)
            p.execute()

    def gone(self, name: str) -> None:
        self.r.zrem(self.server_set, name)
