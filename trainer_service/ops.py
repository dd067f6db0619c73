"""Our own CPU ops for training, from small C kernels (``kernels/``) compiled at first use.

**tanh-GELU.** ATen's CPU tanh-GELU runs far below memory speed (forward or backward takes about six times
what ``torch.tanh`` over the same tensor does): at ``gpt-mini`` sizes it was a sixth of a training step. The
kernel is a plain loop that gcc vectorizes with glibc's vector ``tanhf`` and splits over torch's OpenMP
threads. Every element goes through the same vector code (there is no scalar remainder loop), so results
are bit-identical whatever the thread count or alignment: CPU resumes stay exact. The arithmetic is minGPT's
NewGELU op by op in float32 (and backward that of autograd through it, in its order, without FMA contraction):
only ``tanhf`` differs (glibc's, not ATen's), so training stays within the minGPT fixture's 1e-5, which
looser rewrites (a sigmoid form, a closed-form derivative) did not.

**Causal self-attention.** PyTorch's CPU flash attention tiles for long sequences; at minGPT's sizes (head
size 16 to 64, a few hundred positions) its forward and backward took a fifth to a third of a step, and it
has no fused path with dropout at all. The kernel takes c_attn's output as it is, keeps one head's q, k and
v in cache, and writes the output and the gradient in the layouts the neighbouring Linear layers use (see
``kernels/attention.c``). It is exact attention, within float32 rounding of SDPA, with minGPT's attention
dropout drawn inside it, and its results do not depend on the thread count either.

Off CPU, for other dtypes, under ``torch.compile``, or where no C compiler works, :func:`gelu` is
``F.gelu(x, approximate="tanh")``, and the model takes :func:`sdpa_attention` (or, on CPU with dropout, a
path of its own) instead of :func:`attention_kernel`.
"""

from __future__ import annotations

import ctypes
import functools
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_KERNELS = Path(__file__).with_name("kernels")
_POINTER, _LONG, _FLOAT = ctypes.c_void_p, ctypes.c_long, ctypes.c_float
# The scale, then dropout: seed, threshold (a hash below it drops), 1 / kept share.
_ATTENTION_SCALARS = [_FLOAT, ctypes.c_ulonglong, ctypes.c_uint, _FLOAT]
# Per kernel source: its own compiler flags and its functions' C signatures (argument types, result type).
_LIBRARIES: dict[str, tuple[list[str], dict[str, tuple[list, type | None]]]] = {
    # NewGELU op by op: no FMA may merge two of its operations.
    "gelu": (
        ["-ffp-contract=off"],
        {
            "gelu_forward": ([_POINTER] * 2 + [_LONG], None),
            "gelu_backward": ([_POINTER] * 3 + [_LONG], None),
        },
    ),
    # Matmul-like loops: FMAs wanted; and the row copies stay loops rather than calls to memcpy.
    "attention": (
        ["-fno-tree-loop-distribute-patterns"],
        {
            "attention_forward": ([_POINTER] * 3 + [_LONG] * 4 + _ATTENTION_SCALARS, ctypes.c_int),
            "attention_backward": ([_POINTER] * 4 + [_LONG] * 4 + _ATTENTION_SCALARS, ctypes.c_int),
        },
    ),
}


@functools.cache
def library(name: str) -> ctypes.CDLL | None:
    """The compiled ``kernels/<name>.c``, or None without a working C compiler (callers then use ATen's op).

    Built per process for the CPU it runs on (``-march=native``; 0.1 to 0.5 s), so no cached binary can
    meet another CPU. ``libgomp.so.1`` resolves to the one torch has already loaded: one thread pool. No
    ``-ffast-math``: gcc 12 would link it into the shared object as a process-wide flush-to-zero switch.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    extra_flags, functions = _LIBRARIES[name]
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(tmp, f"{name}.so")
        flags = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", *extra_flags]
        command = [compiler, *flags, str(_KERNELS / f"{name}.c"), "-o", str(built), "-lm"]
        try:
            subprocess.run(command, capture_output=True, check=True, timeout=60)
            lib = ctypes.CDLL(str(built))  # mapped now: the file may go with the directory
        except (OSError, subprocess.SubprocessError):  # no OpenMP, no vector tanhf (glibc < 2.35), ...
            return None
    for function, (argtypes, restype) in functions.items():
        getattr(lib, function).argtypes = argtypes
        getattr(lib, function).restype = restype
    return lib


def _applies(x: torch.Tensor, name: str, dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> bool:
    """Whether the kernel ``name`` takes ``x``: on CPU, of ``dtypes``, contiguous, outside torch.compile."""
    fits = x.device.type == "cpu" and x.dtype in dtypes and x.is_contiguous()
    return fits and not torch.compiler.is_compiling() and library(name) is not None


class _TanhGELU(torch.autograd.Function):
    """Saves only the input, as ATen does, and recomputes tanh in backward: cheaper than storing it."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        y = torch.empty_like(x)
        library("gelu").gelu_forward(x.data_ptr(), y.data_ptr(), x.numel())
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        grad = grad.contiguous()
        dx = torch.empty_like(x)
        library("gelu").gelu_backward(grad.data_ptr(), x.data_ptr(), dx.data_ptr(), x.numel())
        return dx


def gelu(x: torch.Tensor) -> torch.Tensor:
    """minGPT's NewGELU, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``: the kernel where it applies."""
    if _applies(x, "gelu"):
        return _TanhGELU.apply(x)
    return F.gelu(x, approximate="tanh")


class _CausalAttention(torch.autograd.Function):
    """Saves c_attn's output and each row's softmax max and 1 / sum; backward recomputes the probabilities
    from them, as flash attention does, rather than keeping T x T of them per head, and redraws the dropout
    mask from its seed."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, qkv: torch.Tensor, n_head: int, seed: int, threshold: int
    ) -> torch.Tensor:
        B, T, C3 = qkv.shape
        head_size = C3 // 3 // n_head
        y = qkv.new_empty(B, T, C3 // 3)
        stats = qkv.new_empty(B, n_head, T, 2) if ctx.needs_input_grad[0] else None
        # What both kernels take after their pointers: sizes, scale, then dropout's seed, threshold, 1 / kept.
        inv_kept = 2**32 / (2**32 - threshold)
        ctx.args = (B, T, n_head, head_size, 1.0 / math.sqrt(head_size), seed, threshold, inv_kept)
        stats_ptr = None if stats is None else stats.data_ptr()
        _check(library("attention").attention_forward(qkv.data_ptr(), y.data_ptr(), stats_ptr, *ctx.args), T)
        ctx.save_for_backward(qkv, stats)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, dy: torch.Tensor) -> tuple[torch.Tensor, ...]:
        qkv, stats = ctx.saved_tensors
        dy = dy.contiguous()
        dqkv = torch.empty_like(qkv)
        pointers = (qkv.data_ptr(), dy.data_ptr(), stats.data_ptr(), dqkv.data_ptr())
        _check(library("attention").attention_backward(*pointers, *ctx.args), qkv.size(1))
        return dqkv, None, None, None


def _check(status: int, T: int) -> None:
    if status:
        raise MemoryError(f"attention kernel: no memory for its per-thread scratch (T={T})")


def attention_kernel_applies(qkv: torch.Tensor, dropout_p: float = 0.0) -> bool:
    """Whether :func:`attention_kernel` can take ``qkv``: on CPU, in float32 (or in bf16 from autocast, which
    it widens), contiguous, outside torch.compile, and with dropout below 1."""
    return dropout_p < 1.0 and _applies(qkv, "attention", (torch.float32, torch.bfloat16))


def attention_kernel(qkv: torch.Tensor, n_head: int, dropout_p: float = 0.0) -> torch.Tensor:
    """Causal self-attention over c_attn's output ``qkv [B, T, 3C]``, with minGPT's attention dropout, by our
    kernel (see :func:`attention_kernel_applies`): ``y [B, T, C]``, heads side by side.

    The drop rate is ``dropout_p`` rounded to a multiple of 2^-32, kept entries scaled by the exact kept
    share; the mask comes from a seed drawn from torch's CPU generator, so seeded and resumed runs draw the
    same masks.
    """
    threshold = min(round(dropout_p * 2**32), 2**32 - 1)  # a hash below it drops the entry
    seed = int(torch.empty((), dtype=torch.int64).random_()) if threshold else 0
    # Under CPU autocast c_attn gives bf16: the kernel in float32 is far quicker than SDPA in bf16.
    return _CausalAttention.apply(qkv.float(), n_head, seed, threshold)


def sdpa_attention(qkv: torch.Tensor, n_head: int, dropout_p: float = 0.0) -> torch.Tensor:
    """The same attention by PyTorch's ``scaled_dot_product_attention``, where the kernel cannot run."""
    q, k, v = split_heads(qkv, n_head)
    return merge_heads(F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True))


def split_heads(qkv: torch.Tensor, n_head: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``qkv [B, T, 3C]`` as q, k and v views of ``[B, n_head, T, head_size]``."""
    B, T, C = qkv.size(0), qkv.size(1), qkv.size(2) // 3
    return tuple(t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in qkv.split(C, dim=2))


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """``[B, n_head, T, head_size]`` back to ``[B, T, C]``, heads side by side."""
    B, n_head, T, head_size = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, n_head * head_size)
