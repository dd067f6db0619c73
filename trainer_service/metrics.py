"""Model FLOPs utilization: achieved training FLOP/s over the device's peak for the precision in use.

Peaks are the vendors' dense (no sparsity) tensor-core figures. A device not in the table, a CPU among
them, has no known peak, so its MFU is ``None``: reported as missing, never as a made-up number.
"""

from __future__ import annotations

import re

import torch

# (pattern on torch.cuda.get_device_name(), peak FLOP/s by precision). First match wins, so the specific
# variants come before their family.
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    (r"\bH100\b.*\bPCIe\b", {"bf16": 756e12, "tf32": 378e12, "fp32": 51.2e12}),
    (r"\bH100\b.*\bNVL\b", {"bf16": 835e12, "tf32": 418e12, "fp32": 60e12}),
    (r"\bH100\b", {"bf16": 989e12, "tf32": 494.5e12, "fp32": 66.9e12}),  # SXM
    (r"\bH200\b", {"bf16": 989e12, "tf32": 494.5e12, "fp32": 66.9e12}),
    (r"\bA100\b", {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
    (r"\bL4\b", {"bf16": 121e12, "tf32": 60e12, "fp32": 30.3e12}),
]


def precision_name(device: torch.device, autocast_dtype: torch.dtype | None) -> str:
    """Which peak applies: bf16 under autocast, tf32 for float32 matmuls on CUDA (we enable it), else fp32."""
    if autocast_dtype == torch.bfloat16:
        return "bf16"
    return "tf32" if device.type == "cuda" else "fp32"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def peak_flops(name: str, precision: str) -> float | None:
    """The peak FLOP/s of the device called ``name`` at ``precision``, or None when unknown."""
    for pattern, peaks in PEAK_FLOPS:
        if re.search(pattern, name):
            return peaks.get(precision)
    return None


def mfu(tokens_per_s_per_device: float, flops_per_token: int, peak: float | None) -> float | None:
    """Share of the device's peak that the training math reached (0..1), or None when the peak is unknown."""
    if peak is None:
        return None
    return tokens_per_s_per_device * flops_per_token / peak
