"""A minGPT-style training loop over batches streamed from the data service.

The loop is minGPT's (forward, zero_grad, backward, clip, step, then ``on_batch_end`` callbacks) with two
additions the service needs: an lr schedule and resumption mid-run. Batches arrive as CPU tensors from the
gRPC client; the trainer times how long it waits on them, so reports can tell a slow stream from slow math.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch

from trainer_service.model import GPT

Callback = Callable[["Trainer"], None]


@dataclass
class TrainerConfig:
    device: str = "auto"
    max_iters: int | None = None
    batch_size: int = 64
    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1  # only applied to Linear weights, see GPT.configure_optimizers
    grad_norm_clip: float = 1.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_iters: int = 0
    min_lr_ratio: float = 0.1  # the cosine schedule ends at learning_rate * min_lr_ratio


class Trainer:
    """Trains ``model`` on ``(x, y)`` batches until ``max_iters``, the batches run out, or ``stop()``.

    Callbacks registered for ``"on_batch_end"`` run after every optimizer step; there ``iter_num`` is the
    0-based index of the step just taken, as in minGPT. To resume, either set ``iter_num`` and load the
    optimizer state before ``run()``, or save ``state_dict()`` from a callback and ``load_state_dict()`` it.
    """

    def __init__(
        self, config: TrainerConfig, model: GPT, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    ) -> None:
        if config.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")
        if config.lr_schedule == "cosine" and config.max_iters is None:
            raise ValueError("the cosine lr schedule needs max_iters")
        self.config = config
        if config.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(config.device)
        # Move first, then build the optimizer, so it picks the fused kernel for the real device and a caller
        # can load optimizer state before run().
        self.model = model.to(self.device)
        self.optimizer = model.configure_optimizers(config)
        self.batches = batches
        self.callbacks: defaultdict[str, list[Callback]] = defaultdict(list)

        # What callbacks read.
        self.iter_num = 0
        self.iter_time = 0.0  # wall-clock time when the last step finished
        self.iter_dt = 0.0  # seconds for the last iteration: fetch, forward, backward, step
        self.data_wait_s = 0.0  # of iter_dt, the seconds spent waiting on the batch iterator
        self.tokens_per_s = 0.0
        self.loss: torch.Tensor | None = None
        self.lr = self.lr_at(self.iter_num)
        self._stop_requested = False
        self._mid_step = False  # between optimizer.step() and the iter_num increment, i.e. inside callbacks

    def add_callback(self, onevent: str, callback: Callback) -> None:
        self.callbacks[onevent].append(callback)

    def set_callback(self, onevent: str, callback: Callback) -> None:
        self.callbacks[onevent] = [callback]

    def trigger_callbacks(self, onevent: str) -> None:
        for callback in self.callbacks.get(onevent, []):
            callback(self)

    def stop(self) -> None:
        """Ask run() to return once the current iteration, callbacks included, is done."""
        self._stop_requested = True

    def lr_at(self, it: int) -> float:
        """Learning rate for step ``it``: linear warmup, then constant or cosine decay to the floor."""
        cfg = self.config
        if it < cfg.warmup_iters:
            return cfg.learning_rate * (it + 1) / cfg.warmup_iters
        if cfg.lr_schedule == "constant":
            return cfg.learning_rate
        progress = min(1.0, (it - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters))
        min_lr = cfg.learning_rate * cfg.min_lr_ratio
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.learning_rate - min_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything besides the model weights needed to resume bit-exactly: step count, optimizer, RNG.

        Dropout draws from the torch RNG, so a resumed run repeats the uninterrupted one only if the RNG
        state is restored too. Call from an ``on_batch_end`` callback or after run(); ``iter_num`` here is
        the number of steps completed, i.e. the step to resume at. The optimizer tensors are live: save
        or copy them before training goes on.
        """
        state = {
            "iter_num": self.iter_num + 1 if self._mid_step else self.iter_num,
            "optimizer": self.optimizer.state_dict(),
            "rng_state": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng_state"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iter_num = state["iter_num"]
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_state"])
        if "cuda_rng_state" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng_state"], self.device)

    def run(self) -> None:
        model, cfg = self.model, self.config
        model.train()
        self._stop_requested = False
        while not self._stop_requested and (cfg.max_iters is None or self.iter_num < cfg.max_iters):
            t0 = time.perf_counter()
            try:
                x, y = next(self.batches)
            except StopIteration:
                break
            self.data_wait_s = time.perf_counter() - t0
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

            self.lr = self.lr_at(self.iter_num)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr

            _, self.loss = model(x, y)
            model.zero_grad(set_to_none=True)
            self.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_norm_clip)
            self.optimizer.step()

            # On CUDA these are host-side times: right on average over many steps, or at once if a callback
            # syncs (loss.item() does).
            self.iter_dt = time.perf_counter() - t0
            self.iter_time = time.time()
            self.tokens_per_s = x.numel() / self.iter_dt if self.iter_dt > 0 else 0.0
            self._mid_step = True
            try:
                self.trigger_callbacks("on_batch_end")
            finally:
                self._mid_step = False
            self.iter_num += 1
