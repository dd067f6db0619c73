"""The pre-flight: can a fresh copy of the model memorise a few rows of the first batch in a few steps?

If it cannot, nothing later will learn either (targets misaligned or masked, a broken loss), and the
report says so before anyone reads a long loss curve. It trains a copy built from the model's config and
weights, with dropout off (so it draws no random numbers) and its own optimizer; the RNG state is saved
and restored anyway. The job's model, optimizer and RNG are untouched, so resuming stays bit-exact.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from trainer_service.device import autocast


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def overfit_one_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    lr: float,
    ratio: float,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Train a copy of ``model`` on ``(x, y)`` for ``steps`` steps; return the losses and whether it passed.

    ``model`` is a minGPT-style GPT: ``type(model)(model.config)`` builds a twin and
    ``configure_optimizers`` makes its AdamW (weight decay off: memorising is the point here).
    """
    device = next(model.parameters()).device
    saved_rng = _rng_state(device)
    twin = type(model)(model.config).to(device)
    twin.load_state_dict(model.state_dict())
    twin.eval()  # dropout off; gradients still flow
    optimizer = twin.configure_optimizers(
        SimpleNamespace(learning_rate=lr, betas=(0.9, 0.95), weight_decay=0.0)
    )
    x, y = x.to(device).long(), y.to(device).long()
    losses = []
    try:
        for _ in range(steps + 1):  # the last forward measures the loss after the last step
            with autocast(device, autocast_dtype):
                _, loss = twin(x, y)
            losses.append(loss.detach().float())
            if len(losses) > steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
            optimizer.step()
    finally:
        torch.set_rng_state(saved_rng[0])
        if saved_rng[1] is not None:
            torch.cuda.set_rng_state(saved_rng[1], device)
    values = torch.stack(losses).tolist()
    start, end = values[0], values[-1]
    passed = math.isfinite(start) and math.isfinite(end) and start > 0 and end < ratio * start
    return {
        "rows": int(x.size(0)),
        "steps": steps,
        "lr": lr,
        "ratio": ratio,
        "initial_loss": start,
        "final_loss": end,
        "losses": values,
        "passed": passed,
    }
