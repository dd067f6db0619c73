"""The small GPT and the random batches that the trainer's tests, on CPU and on CUDA, train."""

from __future__ import annotations

import torch

from trainer_service.model import GPT, GPTConfig

VOCAB, BLOCK = 65, 16


def nano(dropout: float = 0.0, block_size: int = BLOCK) -> GPT:
    config = GPTConfig.from_preset(
        "gpt-nano", VOCAB, block_size, embd_pdrop=dropout, resid_pdrop=dropout, attn_pdrop=dropout
    )
    return GPT(config)


def random_batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` batches of 4 random (x, y) rows of BLOCK tokens, the same for the same seed."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, VOCAB, (4, BLOCK), generator=g), torch.randint(0, VOCAB, (4, BLOCK), generator=g))
        for _ in range(n)
    ]
