"""MFU: the peak FLOP/s table by device and precision, and no number where the peak is unknown."""

from __future__ import annotations

import pytest
import torch

from trainer_service import metrics


@pytest.mark.parametrize(
    ("name", "precision", "peak"),
    [
        ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
        ("NVIDIA A100 80GB PCIe", "tf32", 156e12),
        ("NVIDIA H100 80GB HBM3", "bf16", 989e12),
        ("NVIDIA H100 PCIe", "bf16", 756e12),
        ("NVIDIA H100 NVL", "bf16", 835e12),
        ("NVIDIA H200", "bf16", 989e12),
        ("NVIDIA L4", "bf16", 121e12),
        ("NVIDIA L4", "fp32", 30.3e12),
        ("NVIDIA L40S", "bf16", None),  # not an L4, and not in the table
        ("Tesla T4", "bf16", None),
        ("cpu", "fp32", None),
    ],
)
def test_peak_flops_by_device_and_precision(name: str, precision: str, peak: float | None) -> None:
    assert metrics.peak_flops(name, precision) == peak


def test_mfu() -> None:
    # nanoGPT's yardstick: gpt2 at 1024 tokens is ~854 MFLOP/token; 100k tokens/s on an A100 is ~27%.
    assert metrics.mfu(100_000, 854_438_400, 312e12) == pytest.approx(0.2739, abs=1e-4)
    assert metrics.mfu(100_000, 854_438_400, None) is None


def test_precision_names() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert metrics.precision_name(cpu, None) == "fp32"
    assert metrics.precision_name(cuda, None) == "tf32"  # the trainer turns TF32 on for CUDA
    assert metrics.precision_name(cuda, torch.bfloat16) == "bf16"
    assert metrics.device_name(cpu) == "cpu"
