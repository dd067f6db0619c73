"""A minGPT-style training loop, fed by the data service's stream or by a minGPT dataset.

The loop is minGPT's (forward, zero_grad, backward, clip, step, then ``on_batch_end`` callbacks), with what
the service needs on top: an lr schedule, resumption mid-run, timing of the wait on data, and the speed
paths (bf16 autocast, TF32, optional ``torch.compile``, batch copies that overlap compute, DDP when a
process group is up). On CPU it stays plain float32, so a resumed run repeats an uninterrupted one exactly.
Every step is traced (``trainer.trace``: batch fetch, lr schedule, forward, loss, backward, gradient clip,
optimizer step) for the fit report; tracing changes no computation.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, IterableDataset
from torch.utils.data.sampler import RandomSampler

from trainer_service.device import (
    DeviceBatches,
    Precision,
    autocast,
    autocast_dtype,
    enable_tf32,
    resolve_device,
)
from trainer_service.model import GPT
from trainer_service.report.trace import Mark, Trace

Callback = Callable[["Trainer"], None]
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TrainerConfig:
    """minGPT's Trainer config (names and defaults), plus the schedule and the speed options."""

    device: str = "auto"
    num_workers: int = 4  # DataLoader workers, used when the Trainer is given a minGPT-style dataset
    max_iters: int | None = None
    batch_size: int = 64
    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1  # only applied to Linear weights, see GPT.configure_optimizers
    grad_norm_clip: float = 1.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_iters: int = 0
    min_lr_ratio: float = 0.1  # the cosine schedule ends at learning_rate * min_lr_ratio
    precision: Precision = "auto"  # auto: bf16 autocast on CUDA where supported, float32 on CPU
    compile: bool = False  # torch.compile the training forward/backward (worth it on CUDA, for long jobs)


class _LogitsMark:
    """A forward hook for ``lm_head``: marks the moment the logits exist, i.e. where the loss begins.

    It holds the trace alone (not the trainer), so a model that carries it can still be copied or pickled.
    """

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.mark: Mark | None = None

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        if module.training:  # evaluation and generation are traced as wholes
            self.mark = self.trace.mark(device=True)


class Trainer:
    """Trains ``model`` on ``(x, y)`` batches until ``max_iters``, the batches run out, or ``stop()``.

    ``data`` is an iterator of batches, or (as in minGPT) a dataset of ``(x, y)`` examples, sampled with
    replacement by a DataLoader. Callbacks registered for ``"on_batch_end"`` run after every optimizer step;
    there ``iter_num`` is the 0-based index of the step just taken, as in minGPT. To resume, either set
    ``iter_num`` and load the optimizer state before ``run()``, or save ``state_dict()`` from a callback
    and ``load_state_dict()`` it.

    When ``torch.distributed`` is initialized with several processes, the model trains wrapped in DDP
    (gradients averaged across ranks); ``model`` stays the plain GPT, for checkpoints and evaluation.
    """

    @staticmethod
    def get_default_config() -> TrainerConfig:
        return TrainerConfig()

    def __init__(self, config: TrainerConfig, model: GPT, data: Iterable[Batch] | Dataset) -> None:
        if config.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")
        if config.lr_schedule == "cosine" and config.max_iters is None:
            raise ValueError("the cosine lr schedule needs max_iters")
        self.config = config
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            enable_tf32()
        self.autocast_dtype = autocast_dtype(self.device, config.precision)
        # Move first, then build the optimizer, so it picks the fused kernel for the real device and a caller
        # can load optimizer state before run().
        self.model = model.to(self.device)
        self.optimizer = model.configure_optimizers(config)
        self.train_model = self._wrap(self.model)
        self.callbacks: defaultdict[str, list[Callback]] = defaultdict(list)
        self.batches = data  # type: ignore[assignment]  # the setter turns a dataset into batches

        # What callbacks read.
        self.iter_num = 0
        self.iter_time = 0.0  # wall-clock time when the last step finished
        self.iter_dt = 0.0  # seconds for the last iteration: fetch, forward, backward, step
        self.data_wait_s = 0.0  # of iter_dt, the seconds spent waiting on the batch iterator
        self.tokens_per_s = 0.0
        self.loss: torch.Tensor | None = None
        self.grad_norm: torch.Tensor | None = None  # before clipping; a tensor: reading it syncs
        self.lr = self.lr_at(self.iter_num)
        self.trace = Trace(self.device)
        self._boundary = _LogitsMark(self.trace)
        lm_head = getattr(model, "lm_head", None)
        if isinstance(lm_head, nn.Module) and not config.compile:
            # Where the forward pass ends and the loss begins, without changing how the model computes the
            # loss (a compiled model would break its graph here, so it reports the two together).
            lm_head.register_forward_hook(self._boundary)
        self._stop_requested = False
        self._mid_step = False  # between optimizer.step() and the iter_num increment, i.e. inside callbacks

    def _wrap(self, model: nn.Module) -> nn.Module:
        """DDP when several processes train together, then torch.compile when asked (it handles DDP)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # The only buffers are the constant attn.bias masks: no need to re-send them every step.
            model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
        if self.config.compile:
            model = torch.compile(model)
        return model

    @property
    def batches(self) -> Iterator[Batch]:
        return self._batches

    @batches.setter
    def batches(self, data: Iterable[Batch] | Dataset) -> None:
        if isinstance(data, IterableDataset):
            data = DataLoader(data, batch_size=self.config.batch_size, num_workers=self.config.num_workers)
        elif isinstance(data, Dataset):
            # minGPT's sampling: with replacement, for as long as training runs.
            sampler = RandomSampler(data, replacement=True, num_samples=int(1e10))
            data = DataLoader(
                data,
                sampler=sampler,
                shuffle=False,
                pin_memory=self.device.type == "cuda",
                batch_size=self.config.batch_size,
                num_workers=self.config.num_workers,
            )
        batches = iter(data)
        self._batches = DeviceBatches(batches, self.device) if self.device.type == "cuda" else batches

    def _forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model's forward and loss (one call, as minGPT's), traced as two functions."""
        self._boundary.mark = None
        start = self.trace.mark(device=True)
        with autocast(self.device, self.autocast_dtype):
            _, loss = model(x, y)
        end, boundary = self.trace.mark(device=True), self._boundary.mark
        if boundary is None:  # no boundary seen: the loss counts, its time is inside forward's
            self.trace.add("forward", start, end)
            self.trace.add_seconds("loss", 0.0)
        else:
            self.trace.add("forward", start, boundary)
            self.trace.add("loss", boundary, end)
        return loss

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
        model, cfg = self.train_model, self.config
        model.train()
        self._stop_requested = False
        while not self._stop_requested and (cfg.max_iters is None or self.iter_num < cfg.max_iters):
            t0 = time.perf_counter()
            try:
                x, y = next(self._batches)
            except StopIteration:
                break
            self.data_wait_s = time.perf_counter() - t0
            self.trace.add_seconds("batch_fetch", self.data_wait_s)
            # No-ops when the batches are already there (CUDA: DeviceBatches copied them on a side stream).
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if y.dtype != torch.long:  # a narrower wire dtype: widen on the device, after the smaller copy
                x, y = x.long(), y.long()

            with self.trace.span("lr_schedule"):
                self.lr = self.lr_at(self.iter_num)
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr

            self.loss = self._forward(model, x, y)
            with self.trace.span("backward", device=True):
                self.optimizer.zero_grad(set_to_none=True)
                self.loss.backward()
            with self.trace.span("grad_clip", device=True):
                self.grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_norm_clip)
            with self.trace.span("optimizer_step", device=True):
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
