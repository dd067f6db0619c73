"""A GPT that is minGPT-compatible (same presets, state_dict keys, init and losses) but faster.

Compatibility is the point: a minGPT checkpoint loads here with ``strict=True`` and ours loads into minGPT,
so fit reports can be checked against the reference implementation. Speed comes from fused attention
(``scaled_dot_product_attention``, or on CPU a kernel of ours, attention dropout included), fused AdamW, a
fused tanh-GELU (on CPU a kernel compiled at first use: both in ``ops``) and, on CPU, a cheaper dropout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from simtrain.model_presets import MODEL_PRESETS
from trainer_service.ops import (
    attention_kernel,
    attention_kernel_applies,
    gelu,
    merge_heads,
    sdpa_attention,
    split_heads,
)

# Device types with a fused AdamW kernel (torch.optim's own list, minus the exotic backends).
_FUSED_ADAMW_DEVICES = frozenset({"cpu", "cuda", "mps", "xpu"})


@dataclass
class GPTConfig:
    """minGPT's model config: ``model_type`` or ``n_layer``/``n_head``/``n_embd``, plus the data sizes."""

    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    vocab_size: int | None = None
    block_size: int | None = None
    embd_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    model_type: str | None = None

    def __post_init__(self) -> None:
        if self.model_type is not None:
            if self.model_type not in MODEL_PRESETS:
                known = ", ".join(MODEL_PRESETS)
                raise ValueError(f"unknown model_type {self.model_type!r}; known: {known}")
            preset = MODEL_PRESETS[self.model_type]
            given = (self.n_layer, self.n_head, self.n_embd)
            if any(s is not None for s in given) and given != preset:
                raise ValueError(
                    f"model_type {self.model_type!r} is {preset}, not n_layer/n_head/n_embd {given}"
                )
        if self.n_embd is not None and self.n_head is not None and self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

    @classmethod
    def from_preset(cls, model_type: str, vocab_size: int, block_size: int, **dropouts: float) -> GPTConfig:
        """Build a config from one of minGPT's named sizes, e.g. ``gpt-nano`` or ``gpt2``."""
        return cls(vocab_size=vocab_size, block_size=block_size, model_type=model_type, **dropouts).resolved()

    def resolved(self) -> GPTConfig:
        """Fill the sizes from ``model_type``, as minGPT's GPT does; refuse a config that lacks some."""
        if self.model_type is not None:
            self.n_layer, self.n_head, self.n_embd = MODEL_PRESETS[self.model_type]
        missing = [
            k for k in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size") if getattr(self, k) is None
        ]
        if missing:
            raise ValueError(
                "GPTConfig needs model_type or n_layer/n_head/n_embd, and vocab_size and block_size; "
                f"missing {', '.join(missing)}"
            )
        return self


# From here on p rounds to 65536/65536: everything dropped, no kept share to scale by.
_MAX_MASK_P = 1.0 - 2**-17


def keep_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """A CPU dropout mask (True = keep) and the exact share it keeps, from 16 random bits per element.

    torch's CPU RNG is serial, and a float per element (what ``F.dropout`` draws) is most of dropout's
    cost. Four 16-bit draws per 64-bit word take half the generator calls and a quarter of the memory.
    The drop rate is ``p`` rounded to a multiple of 1/65536 (0.1 becomes 0.1000061); callers scale by
    the exact kept share, so the expected activation is unchanged.
    """
    n = math.prod(shape)
    threshold = round(p * 65536)  # a draw below it is dropped
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    draws = words.view(torch.int16)[:n].view(shape)  # uniform over [-32768, 32767]
    return draws >= threshold - 32768, 1.0 - threshold / 65536


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, as ``F.dropout``, with the cheaper :func:`keep_mask` on CPU.

    ``where`` also keeps just a byte mask for backward, where ``F.dropout`` keeps a float one. CUDA has
    a fused kernel of its own.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= _MAX_MASK_P:
        return F.dropout(x, p, True)
    keep, kept = keep_mask(x.shape, p)
    return torch.where(keep, x * (1.0 / kept), 0.0)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same name, no state) using :func:`dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = Dropout(config.resid_pdrop)
        self.n_head = config.n_head
        self.attn_pdrop = config.attn_pdrop
        # minGPT's causal mask, kept so state_dicts match minGPT's. The attention kernels mask by themselves;
        # only the CPU fallback with attention dropout reads it.
        mask = torch.tril(torch.ones(config.block_size, config.block_size))
        self.register_buffer("bias", mask.view(1, 1, config.block_size, config.block_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.c_attn(x)
        dropout_p = self.attn_pdrop if self.training else 0.0
        if attention_kernel_applies(qkv, dropout_p):
            y = attention_kernel(qkv, self.n_head, dropout_p)
        elif 0.0 < dropout_p < _MAX_MASK_P and x.device.type == "cpu":
            y = self._attention_with_cpu_dropout(qkv, dropout_p)
        else:
            y = sdpa_attention(qkv, self.n_head, dropout_p)
        return self.resid_dropout(self.c_proj(y))

    def _attention_with_cpu_dropout(self, qkv: torch.Tensor, p: float) -> torch.Tensor:
        """CPU attention dropout where our kernel cannot run (no C compiler, torch.compile). CPU SDPA has no
        fused kernel with dropout: its fallback rebuilds the mask every call. This uses the stored mask,
        folded into the score matmul as an additive bias, and the cheaper dropout mask, with dropout's
        1/(1-p) applied to the output (T x head_size) instead of the weights (T x T)."""
        q, k, v = split_heads(qkv, self.n_head)
        T = q.size(-2)
        mask = self.bias[0, 0, :T, :T]
        bias = torch.zeros_like(mask, dtype=q.dtype).masked_fill_(mask == 0, float("-inf"))
        scores = torch.baddbmm(
            bias, q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2), alpha=1.0 / math.sqrt(k.size(-1))
        )
        att = F.softmax(scores, dim=-1)
        kept = 1.0
        if p > 0.0:
            keep, kept = keep_mask(att.shape, p)
            att = torch.where(keep, att, 0.0)
        return merge_heads(torch.bmm(att, v.flatten(0, 1)).mul_(1.0 / kept).view_as(v))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The tanh approximation, as in minGPT and GPT-2, so activations match theirs and not just closely.
        return self.dropout(self.c_proj(gelu(self.c_fc(x))))


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
    @staticmethod
    def get_default_config() -> GPTConfig:
        """minGPT's entry point: set ``model_type`` (or the sizes), ``vocab_size`` and ``block_size``."""
        return GPTConfig()

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config.resolved()
        # Module names and registration order fix the state_dict keys and their order, which match minGPT's.
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=Dropout(config.embd_pdrop),
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

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs (forward + backward) per token, PaLM's estimate as nanoGPT uses it.

        6 per weight of every matmul (lm_head included, since minGPT does not tie it to wte; embeddings are
        lookups, not matmuls) plus 12 * n_layer * n_embd * seq_len for the attention scores and mix.
        """
        T = seq_len or self.config.block_size
        matmul_weights = sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))
        return 6 * matmul_weights + 12 * self.config.n_layer * self.config.n_embd * T

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
            # In float32 even under autocast: the softmax over the vocabulary is where bf16 hurts. The mean
            # over real targets, as minGPT's, but 0 (not 0/0 = NaN) for a batch whose targets are all -1.
            targets = targets.reshape(-1)
            total = F.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets, ignore_index=-1, reduction="sum"
            )
            loss = total / (targets != -1).sum().clamp(min=1)
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
            logits = logits[:, -1, :].float() / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if do_sample:
                next_idx = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            else:
                next_idx = logits.argmax(dim=-1, keepdim=True)
            idx = torch.cat((idx, next_idx), dim=1)
        return idx
