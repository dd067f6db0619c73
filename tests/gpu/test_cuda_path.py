"""The CUDA path: bf16 autocast, TF32, fused AdamW, pinned batches copied on a side stream, compile, resume.

Skipped where no GPU is seen, as in CI (``tests/unit/test_trainer.py`` runs its bf16 test on CUDA too). On a
GPU host, ``pytest tests/gpu``; they need only torch, so ``pytest --noconftest tests/gpu`` also runs them
where the services' packages are not installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tests.tiny_gpt import VOCAB, nano, random_batches
from trainer_service.checkpoint import load_checkpoint, save_checkpoint
from trainer_service.device import Batch, DeviceBatches, pin
from trainer_service.model import GPT
from trainer_service.prefetch import Prefetcher
from trainer_service.trainer import Trainer, TrainerConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@dataclass
class Trained:
    trainer: Trainer
    losses: list[float] = field(default_factory=list)  # each step's
    pinned: list[bool] = field(default_factory=list)  # whether each batch the trainer was handed was pinned


def train(config: TrainerConfig, model: GPT, batches: list[Batch]) -> Trained:
    """Train through the prefetch thread with pinned batches, as the worker does on CUDA."""
    pinned: list[bool] = []

    def pin_and_note(batch: Batch) -> Batch:
        batch = pin(batch)
        pinned.append(batch[0].is_pinned() and batch[1].is_pinned())
        return batch

    source = Prefetcher(iter(batches), depth=4, transform=pin_and_note)
    run = Trained(Trainer(config, model, source), pinned=pinned)
    run.trainer.add_callback("on_batch_end", lambda t: run.losses.append(t.loss.item()))
    run.trainer.run()
    source.close()
    return run


def test_trains_in_bf16_with_tf32_fused_adamw_and_pinned_side_stream_copies() -> None:
    torch.manual_seed(0)
    config = TrainerConfig(device="cuda", max_iters=40, learning_rate=1e-3)
    run = train(config, nano(), random_batches(1) * 40)  # one batch, learnt by heart
    trainer = run.trainer

    assert trainer.autocast_dtype == torch.bfloat16
    assert torch.get_float32_matmul_precision() == "high"  # TF32 for what runs outside autocast
    assert trainer.optimizer.defaults["fused"]
    assert isinstance(trainer.batches, DeviceBatches)
    assert all(p.is_cuda and p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights
    assert len(run.pinned) == 40 and all(run.pinned)
    assert run.losses[-1] < run.losses[0] - 1.0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, imported by torch.compile
def test_compiled_training_follows_eager() -> None:
    losses = {}
    for compile in (False, True):
        torch.manual_seed(0)
        config = TrainerConfig(device="cuda", max_iters=20, learning_rate=1e-3, compile=compile)
        losses[compile] = train(config, nano(), random_batches(20)).losses
    assert max(abs(a - b) for a, b in zip(losses[False], losses[True], strict=True)) < 0.05


def test_a_checkpoint_resumes_on_cuda(tmp_path: Path) -> None:
    """Saved atomically, loaded as data, resumed with the CUDA RNG: it ends where an uninterrupted run does.

    Close rather than bit-equal: PyTorch does not promise a deterministic fused attention backward on CUDA.
    """
    k, n, batches = 4, 10, random_batches(10)
    config = TrainerConfig(
        device="cuda", max_iters=n, learning_rate=1e-3, lr_schedule="cosine", warmup_iters=3
    )

    torch.manual_seed(1)
    straight = train(config, nano(dropout=0.1), batches).trainer.model

    torch.manual_seed(1)
    first = Trainer(config, nano(dropout=0.1), iter(batches))
    path = tmp_path / "checkpoint.pt"

    def checkpoint_and_stop(t: Trainer) -> None:
        if t.iter_num + 1 == k:
            save_checkpoint(path, {"model": t.model.state_dict(), "trainer": t.state_dict()})
            t.stop()

    first.add_callback("on_batch_end", checkpoint_and_stop)
    first.run()
    saved = load_checkpoint(path)
    assert saved is not None and "cuda_rng_state" in saved["trainer"]
    torch.manual_seed(99)
    torch.cuda.manual_seed(99)

    model = nano(dropout=0.1)
    model.load_state_dict(saved["model"], strict=True)
    resumed = Trainer(config, model, iter(batches[k:]))
    resumed.load_state_dict(saved["trainer"])
    resumed.run()

    assert resumed.iter_num == n
    for a, b in zip(resumed.model.parameters(), straight.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_generates_on_cuda() -> None:
    torch.manual_seed(0)
    model = nano().cuda().eval()
    prompt = torch.zeros((2, 3), dtype=torch.long, device="cuda")
    sampled = model.generate(prompt, 20, temperature=0.8, do_sample=True, top_k=5)
    greedy = [model.generate(prompt, 20) for _ in range(2)]
    assert sampled.shape == (2, 23) and sampled.is_cuda and int(sampled.max()) < VOCAB
    assert torch.equal(greedy[0], greedy[1])
