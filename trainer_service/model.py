"""A GPT that is minGPT-compatible (same presets, state_dict keys, init and losses) but faster.

Compatibility is the point: a minGPT checkpoint loads here with ``strict=True`` and ours loads into minGPT,
so fit reports can be checked against the reference implementation. Speed comes from PyTorch's fused
attention (``scaled_dot_product_attention``) and fused AdamW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from simtrain.model_presets import MODEL_PRESETS

# Device types with a fused AdamW kernel (torch.optim's own list, minus the exotic backends).
_FUSED_ADAMW_DEVICES = frozenset({"cpu", "cuda", "mps", "xpu"})


@dataclass
class GPTConfig:
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    block_size: int
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    attn_pdrop: float = 0.1

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

    @classmethod
    def from_preset(cls, model_type: str, vocab_size: int, block_size: int, **dropouts: float) -> GPTConfig:
        """Build a config from one of minGPT's named sizes, e.g. ``gpt-nano`` or ``gpt2``."""
        if model_type not in MODEL_PRESETS:
            raise ValueError(f"unknown model_type {model_type!r}; known: {', '.join(MODEL_PRESETS)}")
        n_layer, n_head, n_embd = MODEL_PRESETS[model_type]
        return cls(n_layer, n_head, n_embd, vocab_size, block_size, **dropouts)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.n_head = config.n_head
        self.attn_pdrop = config.attn_pdrop
        # SDPA applies the causal mask itself; the buffer is unused but kept so state_dicts match minGPT's.
        mask = torch.tril(torch.ones(config.block_size, config.block_size))
        self.register_buffer("bias", mask.view(1, 1, config.block_size, config.block_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        dropout_p = self.attn_pdrop if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The tanh approximation, as in minGPT and GPT-2, so activations match theirs and not just closely.
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        # Module names and registration order fix the state_dict keys and their order, which match minGPT's.
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.embd_pdrop),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                ln_f=nn.LayerNorm(config.n_embd),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

        self.apply(self._init_weights)
        # GPT-2's scaled init: each residual projection adds to the stream, so shrink them by depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Parameters in the transformer, excluding lm_head: the figure minGPT prints."""
        return sum(p.numel() for p in self.transformer.parameters())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[B, T, vocab]`` for ``idx [B, T]``, and the loss when targets are given (-1 = ignore)."""
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, train_config: Any) -> torch.optim.AdamW:
        """AdamW that decays only Linear weights (lm_head included), as minGPT does.

        ``train_config`` needs ``learning_rate``, ``betas`` and ``weight_decay``. Parameters are grouped by
        sorted name, like minGPT, so optimizer state_dicts line up between the two.
        """
        decay, no_decay = set(), set()
        for module_name, module in self.named_modules():
            for param_name, _ in module.named_parameters(recurse=False):
                full_name = f"{module_name}.{param_name}" if module_name else param_name
                if param_name == "weight" and isinstance(module, nn.Linear):
                    decay.add(full_name)
                else:  # biases, LayerNorm and Embedding weights
                    no_decay.add(full_name)
        params = dict(self.named_parameters())
        groups = [
            {"params": [params[n] for n in sorted(decay)], "weight_decay": train_config.weight_decay},
            {"params": [params[n] for n in sorted(no_decay)], "weight_decay": 0.0},
        ]
        # Fused AdamW runs on CPU too (checked on torch 2.13): it reproduces minGPT's ten fixture steps within
        # 1e-5, exactly as closely as the foreach kernel does, so use it wherever the device has the kernel.
        fused = self.lm_head.weight.device.type in _FUSED_ADAMW_DEVICES
        return torch.optim.AdamW(groups, lr=train_config.learning_rate, betas=train_config.betas, fused=fused)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        do_sample: bool = False,
        top_k: int | None = None,
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens to ``idx [B, T]``, greedily or by sampling; call in eval mode."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size :])
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if do_sample:
                next_idx = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            else:
                next_idx = logits.argmax(dim=-1, keepdim=True)
            idx = torch.cat((idx, next_idx), dim=1)
        return idx
