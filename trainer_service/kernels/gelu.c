/* minGPT's NewGELU, forward and backward, for float32 on CPU: see trainer_service/ops.py for why.

   Compiled with -ffp-contract=off: the arithmetic is NewGELU's op by op, so no FMA may merge two of them.
   The `declare simd` below gives gcc glibc's vector tanhf without -ffast-math. */

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
