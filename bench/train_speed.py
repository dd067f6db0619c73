"""CPU training speed: our GPT against a plain minGPT-style implementation of the same model, side by side.

The plain one does what minGPT does: attention as an explicit masked softmax, the GELU written out as a
formula, ``nn.Dropout``, and AdamW without fused or foreach kernels. Both start from the same weights
and train on the same batches, alternating step by step; the median step time of each is kept, so a
noisy machine slows both alike. The JSON carries both figures and their ratio. Where oneDNN offers bf16
on this CPU, a third run times ours under bf16 autocast (a job's ``precision: bf16``), reported apart:
the goals are for float32, the same arithmetic as the plain one.

    .venv/bin/python bench/train_speed.py [--presets gpt-nano,gpt-micro] [--budget-s 10] [--no-bf16]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from timing import alternating
from torch import nn

from trainer_service.device import cpu_bf16_supported
from trainer_service.model import GPT, GPTConfig

VOCAB = 65  # a character vocabulary, as in minGPT's chargpt
GOALS = {0.1: 1.5, 0.0: 2.0}  # speedup wanted at minGPT's default dropout, and with dropout off


class PlainAttention(nn.Module):
    """minGPT's CausalSelfAttention: scores, masked_fill with the stored mask, softmax, dropout, mix."""

    def __init__(self, ours: nn.Module, p: float) -> None:
        super().__init__()
        self.c_attn, self.c_proj, self.n_head = ours.c_attn, ours.c_proj, ours.n_head
        self.attn_dropout, self.resid_dropout = nn.Dropout(p), nn.Dropout(p)
        self.register_buffer("bias", ours.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = self.attn_dropout(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class PlainMLP(nn.Module):
    """minGPT's MLP with its NewGELU: the tanh formula in separate elementwise ops."""

    def __init__(self, ours: nn.Module, p: float) -> None:
        super().__init__()
        self.c_fc, self.c_proj, self.dropout = ours.c_fc, ours.c_proj, nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        return self.dropout(self.c_proj(h))


def build(model_type: str, block_size: int, p: float, plain: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    config = GPTConfig.from_preset(model_type, VOCAB, block_size, embd_pdrop=p, resid_pdrop=p, attn_pdrop=p)
    model = GPT(config)
    hyper = SimpleNamespace(learning_rate=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    optimizer = model.configure_optimizers(hyper)
    if plain:
        model.transformer.drop = nn.Dropout(p)
        for block in model.transformer.h:
            block.attn, block.mlp = PlainAttention(block.attn, p), PlainMLP(block.mlp, p)
        # minGPT's optimizer: torch's default on CPU is the per-parameter loop; say so explicitly. Our
        # groups carry fused=True, which would override the constructor's choice, so take only their
        # parameters and weight decay.
        groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in optimizer.param_groups]
        optimizer = torch.optim.AdamW(groups, lr=3e-4, betas=(0.9, 0.95), foreach=False, fused=False)
    return model, optimizer


class Run:
    """One implementation training on a fixed cycle of batches: the minGPT loop, timed."""

    def __init__(
        self, model_type: str, batch_size: int, block_size: int, p: float, plain: bool, bf16: bool = False
    ) -> None:
        self.model, self.optimizer = build(model_type, block_size, p, plain)
        self.bf16 = bf16
        self.model.train()
        g = torch.Generator().manual_seed(1)
        tokens = torch.randint(0, VOCAB, (8, batch_size, block_size + 1), generator=g)
        self.batches = [(t[:, :-1].contiguous(), t[:, 1:].contiguous()) for t in tokens]
        self.step_num = 0
        self.first_loss: float | None = None

    def step(self) -> None:
        x, y = self.batches[self.step_num % len(self.batches)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            _, loss = self.model(x, y)
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        if self.first_loss is None:
            self.first_loss = loss.item()
        self.step_num += 1

    def timed(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps."""
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - start) / steps


def matmul_ms(model: nn.Module, tokens: int, repeats: int = 5) -> float:
    """Milliseconds of a training step's Linear matmuls alone, each timed on its own (the forward product
    and backward's two per layer, median of ``repeats``): a floor no float32 implementation of this model
    goes under with these matmul kernels."""
    total = 0.0
    for layer in (m for m in model.modules() if isinstance(m, nn.Linear)):
        x, w = torch.randn(tokens, layer.in_features), layer.weight.detach()
        grad = torch.randn(tokens, layer.out_features)
        for a, b in ((x, w.t()), (grad, w), (grad.t(), x)):
            a @ b  # warm
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                a @ b
                times.append(time.perf_counter() - start)
            total += statistics.median(times)
    return 1000 * total


def compare(model_type: str, p: float, batch_size: int, block_size: int, budget_s: float, bf16: bool) -> dict:
    runs = {
        "ours": Run(model_type, batch_size, block_size, p, plain=False),
        "plain": Run(model_type, batch_size, block_size, p, plain=True),
    }
    if bf16:
        runs["ours_bf16"] = Run(model_type, batch_size, block_size, p, plain=False, bf16=True)
    for run in runs.values():  # warm up: allocator, kernels, first-touch memory
        run.timed(2)
    pairs = max(9, round(budget_s / sum(run.timed(1) for run in runs.values())))
    # Step by step, taking turns: the median of single steps ignores a burst of load elsewhere.
    times = alternating({name: run.step for name, run in runs.items()}, pairs)
    tokens = batch_size * block_size
    result: dict = {"model_type": model_type, "dropout": p, "steps": pairs}
    for name in runs:
        s = statistics.median(times[name])
        result[name] = {
            "ms_per_iter": 1000 * s,
            "tokens_per_s": tokens / s,
            "best_ms": 1000 * min(times[name]),
        }
    result["speedup"] = result["plain"]["ms_per_iter"] / result["ours"]["ms_per_iter"]
    # The best any float32 implementation could do here: the plain step over its matmuls alone.
    result["matmul_ms"] = matmul_ms(runs["ours"].model, tokens)
    result["speedup_ceiling"] = result["plain"]["ms_per_iter"] / result["matmul_ms"]
    result["goal"] = GOALS.get(p)
    result["goal_met"] = result["goal"] is not None and result["speedup"] >= result["goal"]
    if bf16:
        result["speedup_bf16"] = result["plain"]["ms_per_iter"] / result["ours_bf16"]["ms_per_iter"]
    if p == 0.0:  # with no randomness the two must compute the same loss: the same model, not a faster other
        result["first_loss"] = {name: run.first_loss for name, run in runs.items()}
        assert abs(runs["ours"].first_loss - runs["plain"].first_loss) < 1e-4, result["first_loss"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="gpt-nano,gpt-micro,gpt-mini")
    parser.add_argument("--dropouts", default="0.1,0.0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--budget-s", type=float, default=10.0, help="about this long per configuration")
    parser.add_argument("--no-bf16", action="store_true", help="leave out the bf16 autocast run")
    args = parser.parse_args()
    bf16 = cpu_bf16_supported() and not args.no_bf16
    results = [
        compare(model_type, float(p), args.batch_size, args.block_size, args.budget_s, bf16)
        for model_type in args.presets.split(",")
        for p in args.dropouts.split(",")
    ]
    print(
        json.dumps(
            {
                "bench": "train_speed",
                "device": "cpu",
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "batch_size": args.batch_size,
                "block_size": args.block_size,
                "vocab_size": VOCAB,
                "plain": "minGPT-style: explicit masked-softmax attention, NewGELU formula, nn.Dropout, "
                "AdamW(foreach=False, fused=False)",
                "ours_bf16": "ours under CPU bf16 autocast (not float32: no goal)" if bf16 else None,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
