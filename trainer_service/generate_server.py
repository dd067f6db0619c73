"""``python -m trainer_service.generate_server``: answer "ask the model" requests from job checkpoints.

The gateway has no torch; it puts each request on Redis (``simtrain.generate_queue``) and this process,
beside the trainers and reading the same jobs folder, samples the job's latest checkpoint with the
tokenizer saved in it. A running job's checkpoint is read again whenever the trainer replaces it, so the
answers follow training. A model trained on a retrieval dataset gets each prompt's context first, from the
data service that prepared it (Retrieve), as its rows had. Nothing a request carries can stop the server:
every failure is its reply.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
from collections import OrderedDict
from typing import Any

import redis
import torch
from pydantic import ValidationError

from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.generate_queue import GenerateQueue, GenerateRequest
from simtrain.settings import Settings
from trainer_service.checkpoint import CheckpointError
from trainer_service.data_client import DataClient, DataServiceError
from trainer_service.sampler import PromptError, Sampler

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"[0-9a-f]{1,64}")
HEARTBEAT_TTL_S = 10.0
MODELS_KEPT = 4  # checkpoints kept loaded, the most recently asked


class GenerateServer:
    def __init__(self, settings: Settings, queue: GenerateQueue | None = None):
        self.settings = settings
        self.queue = queue or GenerateQueue.from_url(settings.redis_url, settings.key_prefix)
        self.name = settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        self.device = settings.generate_device
        self.stopping = threading.Event()
        self._models: OrderedDict[str, tuple[tuple[int, int], Sampler]] = OrderedDict()
        self._clients: dict[str, DataClient] = {}  # by address, for the retrieval datasets' context

    def run_forever(self) -> None:
        """Answer requests until :meth:`stop`; survive Redis outages by waiting and reconnecting."""
        log.info("generate server %s ready (device %s)", self.name, self.device)
        while not self.stopping.is_set():
            try:
                self.queue.heartbeat(self.name, HEARTBEAT_TTL_S)
                request = self.queue.take(block_s=1.0)
                if request is not None:
                    self.queue.reply(request["id"], self.answer(request))
            except redis.RedisError as e:
                log.warning("redis unavailable (%s); retrying", e)
                self.stopping.wait(1.0)
        try:
            self.queue.gone(self.name)
        except redis.RedisError:
            pass  # the heartbeat runs out by itself
        log.info("generate server %s stopped", self.name)

    def stop(self) -> None:
        self.stopping.set()

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request; never raises."""
        started = time.perf_counter()
        job_id = str(request.get("job_id", ""))
        try:
            asked = GenerateRequest.model_validate(
                {k: v for k, v in request.items() if k not in ("id", "job_id", "deadline")}
            )
        except ValidationError as e:
            return {"ok": False, "code": "failed", "message": f"not a valid generate request: {e}"}
        if not JOB_ID.fullmatch(job_id):
            return {"ok": False, "code": "failed", "message": f"not a job id: {job_id!r}"}
        try:
            sampler = self._sampler(job_id)
            if sampler is None:
                return {
                    "ok": False,
                    "code": "no_checkpoint",
                    "message": f"job {job_id} has no checkpoint yet",
                }
            context, note = self._context(sampler, asked.prompt)
            completions = sampler.complete(
                asked.prompt,
                asked.max_new_tokens,
                asked.temperature,
                asked.top_k,
                asked.n,
                asked.seed,
                context=list(context.tokens) if context else None,
            )
        except DataServiceError as e:
            return {
                "ok": False,
                "code": "failed",
                "message": f"this model was trained with retrieved context, which could not be found: {e}",
            }
        except CheckpointError as e:
            return {"ok": False, "code": "bad_checkpoint", "message": str(e)}
        except PromptError as e:
            return {"ok": False, "code": "bad_prompt", "message": str(e)}
        except Exception as e:  # a failure of ours must reach the asker, not end the server
            log.exception("generate for job %s failed", job_id)
            return {"ok": False, "code": "failed", "message": f"generating failed: {type(e).__name__}: {e}"}
        seconds = time.perf_counter() - started
        log.info(
            "job %s: %d answer(s) of up to %d tokens in %.2fs", job_id, asked.n, asked.max_new_tokens, seconds
        )
        reply: dict[str, Any] = {
            "ok": True,
            "step": sampler.step,
            "completions": [c.as_dict() for c in completions],
            "seconds": seconds,
        }
        if context is not None:
            reply["context"] = {"text": context.text, "passages": context.passages}
        if note is not None:
            reply["note"] = note
        return reply

    def _context(self, sampler: Sampler, prompt: str) -> tuple[pb.RetrievedContext | None, str | None]:
        """For a model trained on a retrieval dataset: the prompt's context, found as its rows' was (or why
        it is asked without); (None, None) for other models."""
        if sampler.retrieval is None:
            return None, None
        address, dataset_id = sampler.retrieval["data_service"], sampler.retrieval["dataset_id"]
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = DataClient.configured(address, self.settings)
        found = client.retrieve(dataset_id, [prompt])
        if found is None:
            return (
                None,
                f"asked without retrieved context: the data service at {address} does not offer Retrieve",
            )
        return found[0], None

    def _sampler(self, job_id: str) -> Sampler | None:
        """The job's latest checkpoint, loaded once per version of the file; None when it has none."""
        path = self.settings.jobs_dir / job_id / "checkpoint.pt"
        try:
            st = path.stat()
        except FileNotFoundError:
            self._models.pop(job_id, None)
            return None
        version = (st.st_mtime_ns, st.st_size)
        held = self._models.get(job_id)
        if held is not None and held[0] == version:
            self._models.move_to_end(job_id)
            return held[1]
        sampler = Sampler.from_checkpoint(path, self.device)
        self._models[job_id] = (version, sampler)
        self._models.move_to_end(job_id)
        while len(self._models) > MODELS_KEPT:
            self._models.popitem(last=False)
        return sampler


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))  # leave the trainer its cores
    server = GenerateServer(Settings())
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    print(f"generate server {server.name} started", flush=True)
    server.run_forever()


if __name__ == "__main__":
    main()
