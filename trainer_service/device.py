"""Where and how the math runs: device choice, TF32 and bf16 autocast, overlapped batch copies.

CPU is the default wherever no GPU is seen. It trains in plain float32, minGPT's arithmetic, unless a job asks
for bf16; either way a run is bit-reproducible at a given thread count. On CUDA, bf16 autocast is the default
where supported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["auto", "bf16", "fp32"]
Batch = tuple[torch.Tensor, torch.Tensor]


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when one is seen, else CPU. ``cuda`` without a GPU is an error, not a CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the job asks for CUDA, but this trainer sees no GPU")
    return device


def enable_tf32() -> None:
    """Let float32 matmuls use TF32 tensor cores (Ampere and later): ~8x the FP32 rate, 10-bit mantissa.

    Through the global setting, not torch 2.9's per-backend ``fp32_precision`` flags: mixing the two
    makes ``torch.get_float32_matmul_precision()`` raise, and torch.compile's autotuner calls it.
    (cuDNN convolutions already default to TF32; the model has none.)
    """
    torch.set_float32_matmul_precision("high")


def cpu_bf16_supported() -> bool:
    """Whether oneDNN can run bf16 on this CPU (natively, or emulated on plain AVX-512)."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast_dtype(device: torch.device, precision: Precision = "auto") -> torch.dtype | None:
    """The autocast dtype for training on ``device``, None for plain float32.

    ``auto``: bf16 on CUDA where supported, float32 on CPU. ``bf16`` on CPU is autocast through oneDNN: worth
    it on CPUs with bf16 arithmetic (AVX512-BF16, AMX); elsewhere oneDNN emulates it, slower than float32.
    """
    if precision == "fp32":
        return None
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise ValueError(f"{torch.cuda.get_device_name(device)} does not support bf16")
        return torch.bfloat16 if supported else None
    if precision == "auto":  # float32 off CUDA
        return None
    if device.type != "cpu":
        raise ValueError(f"bf16 autocast is offered on CUDA and CPU, not {device.type}")
    if not cpu_bf16_supported():
        raise ValueError("this CPU has no bf16 support (oneDNN needs AVX-512 at least); use fp32")
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """bf16 autocast keeps float32 master weights and optimizer state: no loss scaling needed, unlike fp16."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def pin(batch: Batch) -> Batch:
    """Copy a batch into page-locked memory, so the copy to the GPU can be asynchronous (a DMA)."""
    return batch[0].pin_memory(), batch[1].pin_memory()


class DeviceBatches:
    """Yield batches on a CUDA device, copying batch k+1 on a side stream while batch k trains.

    Host batches should be pinned (see :func:`pin`, run in the prefetch thread): the copies are then
    asynchronous and overlap with the compute already queued on the main stream.
    """

    def __init__(self, batches: Iterator[Batch], device: torch.device) -> None:
        self.batches = batches
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self._next: Batch | None = None
        self._done = False

    def _start_copy(self) -> None:
        try:
            x, y = next(self.batches)
        except StopIteration:
            self._next, self._done = None, True
            return
        with torch.cuda.stream(self.stream):
            self._next = (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))

    def __iter__(self) -> DeviceBatches:
        return self

    def __next__(self) -> Batch:
        if self._next is None and not self._done:
            self._start_copy()
        if self._next is None:
            raise StopIteration
        x, y = self._next
        main = torch.cuda.current_stream(self.device)
        main.wait_stream(self.stream)  # the compute that reads x, y waits for their copy, not the host
        x.record_stream(main)  # memory allocated on the side stream is now also in use on the main one
        y.record_stream(main)
        self._start_copy()  # batch k+1 travels while the caller trains on batch k
        return x, y

    def close(self) -> None:
        if hasattr(self.batches, "close"):
            self.batches.close()
