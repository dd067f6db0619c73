"""minGPT's tanh-GELU for CPU training, one memory pass each way, from a small C kernel compiled at first use.

ATen's CPU tanh-GELU runs far below memory speed (forward or backward takes about six times what
``torch.tanh`` over the same tensor does): at ``gpt-mini`` sizes it was a sixth of a training step. The
kernel is a plain loop that gcc vectorizes with glibc's vector ``tanhf`` and splits over torch's OpenMP
threads. Every element goes through the same vector code (there is no scalar remainder loop), so results
are bit-identical whatever the thread count or alignment: CPU resumes stay exact. The arithmetic is minGPT's
NewGELU op by op in float32 (and backward that of autograd through it, in its order, without FMA contraction):
only ``tanhf`` differs (glibc's, not ATen's), so training stays within the minGPT fixture's 1e-5, which
looser rewrites (a sigmoid form, a closed-form derivative) did not. Off CPU, for other dtypes,
under ``torch.compile`` or where no C compiler works, :func:`gelu` is ``F.gelu(x, approximate="tanh")``.
"""

from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_SOURCE = r"""
#include <math.h>
#include <string.h>
#pragma omp declare simd notinbranch
float tanhf(float);

#define K 0.7978845608028654f /* sqrt(2 / pi) */
#define A 0.044715f
#define W 16 /* every element goes through the same vector code: no scalar remainder loop */

static void forward_block(const float *x, float *y) {
#pragma omp simd
  for (int i = 0; i < W; i++) {
    float v = x[i];
    y[i] = (0.5f * v) * (1.0f + tanhf(K * (v + A * (v * v * v))));
  }
}

static void backward_block(const float *grad, const float *x, float *dx) {
#pragma omp simd
  for (int i = 0; i < W; i++) {
    float v = x[i], t = tanhf(K * (v + A * (v * v * v)));
    float g = grad[i], g_inner = (g * (0.5f * v)) * (1.0f - t * t) * K;
    dx[i] = ((g * (1.0f + t)) * 0.5f + g_inner) + (g_inner * A) * (3.0f * (v * v));
  }
}

void gelu_forward(const float *x, float *y, long n) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n / W * W; i += W) forward_block(x + i, y + i);
  long tail = n % W, i = n - tail;
  float xt[W] = {0}, yt[W];
  memcpy(xt, x + i, tail * sizeof(float));
  forward_block(xt, yt);
  memcpy(y + i, yt, tail * sizeof(float));
}

void gelu_backward(const float *grad, const float *x, float *dx, long n) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n / W * W; i += W) backward_block(grad + i, x + i, dx + i);
  long tail = n % W, i = n - tail;
  float gt[W] = {0}, xt[W] = {0}, dt[W];
  memcpy(gt, grad + i, tail * sizeof(float));
  memcpy(xt, x + i, tail * sizeof(float));
  backward_block(gt, xt, dt);
  memcpy(dx + i, dt, tail * sizeof(float));
}
"""


@functools.cache
def kernels() -> ctypes.CDLL | None:
    """The compiled kernels, or None without a working C compiler (then callers use ATen's GELU).

    Built per process for the CPU it runs on (``-march=native``; about 0.1 s), so no cached binary can
    meet another CPU. ``libgomp.so.1`` resolves to the one torch has already loaded: one thread pool.
    ``declare simd`` gives gcc glibc's vector ``tanhf`` without ``-ffast-math``, which gcc 12 would link
    into the shared object as a process-wide flush-to-zero switch.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        source, library = Path(tmp, "gelu.c"), Path(tmp, "gelu.so")
        source.write_text(_SOURCE)
        flags = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC"]
        command = [compiler, *flags, str(source), "-o", str(library), "-lm"]
        try:
            subprocess.run(command, capture_output=True, check=True, timeout=60)
            lib = ctypes.CDLL(str(library))  # mapped now: the file may go with the directory
        except (OSError, subprocess.SubprocessError):  # no OpenMP, no vector tanhf (glibc < 2.35), ...
            return None
    for name, n_pointers in (("gelu_forward", 2), ("gelu_backward", 3)):
        getattr(lib, name).argtypes = [ctypes.c_void_p] * n_pointers + [ctypes.c_long]
        getattr(lib, name).restype = None
    return lib


class _TanhGELU(torch.autograd.Function):
    """Saves only the input, as ATen does, and recomputes tanh in backward: cheaper than storing it."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        y = torch.empty_like(x)
        kernels().gelu_forward(x.data_ptr(), y.data_ptr(), x.numel())
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        grad = grad.contiguous()
        dx = torch.empty_like(x)
        kernels().gelu_backward(grad.data_ptr(), x.data_ptr(), dx.data_ptr(), x.numel())
        return dx


def gelu(x: torch.Tensor) -> torch.Tensor:
    """minGPT's NewGELU, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``: the kernel where it applies."""
    fits = x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous()
    if fits and not torch.compiler.is_compiling() and kernels() is not None:
        return _TanhGELU.apply(x)
    return F.gelu(x, approximate="tanh")
