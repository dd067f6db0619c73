/* Causal self-attention for CPU training with small heads, forward and backward.

   One (batch, head) at a time per thread: its q, k and v (T x D each) are copied out of the c_attn output
   into padded local arrays that stay in cache, and blocks of R query rows go against keys 0..i only. The
   forward keeps each row's softmax max and 1 / sum; the backward recomputes the probabilities from them,
   as flash attention does, instead of storing T x T of them. The output is written in (B, T, C) order and the
   gradient straight into the (B, T, 3C) layout of c_attn's output, so neither needs a transpose or a cat.

   Attention dropout, as minGPT applies it (to the probabilities, scaled by 1 / kept share), keeps or drops
   each (head, row, key) by a hash of those and a seed: the backward draws the same mask again instead of
   storing it. Every (batch, head) runs the same code whatever thread takes it, and sums always go in the
   same order: results do not depend on the thread count. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define W 16 /* floats per vector */
#define R 8  /* query rows per block */

typedef float vec __attribute__((vector_size(W * sizeof(float))));
typedef int ivec __attribute__((vector_size(W * sizeof(int))));
typedef unsigned uvec __attribute__((vector_size(W * sizeof(unsigned))));

static inline vec blend(ivec mask, vec a, vec b) { return (vec)(((ivec)a & mask) | ((ivec)b & ~mask)); }

/* e^x for x <= 80, within 1.01 ulp of the exact value for every float in [-87, 1] (checked against double
   exp): x = n ln2 + f with |f| <= ln2 / 2, e^f from a degree-7 polynomial (Cephes' expf coefficients),
   2^n put straight into the exponent bits. Below -87 (e^-87 < 1.7e-38; -inf included) it gives 0, which a
   softmax whose largest term is e^0 = 1 cannot tell from the true value. */
static inline vec exp_vec(vec x) {
  const vec zero = {0}, round = zero + 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  const ivec underflow = x < -87.0f;
  x = blend(underflow, zero - 87.0f, x);
  const vec shifted = x * 1.44269504088896341f + round;
  const vec n = shifted - round;
  const vec f = (x - n * 0.693359375f) - n * -2.12194440e-4f; /* ln 2 in two parts: f stays exact */
  vec p = zero + 1.9875691500e-4f;
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  p = p * (f * f) + f + 1.0f;
  const ivec two_to_n = ((ivec)shifted - (ivec)round + 127) << 23;
  return blend(underflow, zero, p * (vec)two_to_n);
}

/* Sums and maxima across lanes, halving: a dependency chain of 4 steps rather than 16. */
static inline float sum_lanes(vec v) {
  for (int width = W / 2; width > 0; width /= 2)
    for (int i = 0; i < width; i++) v[i] += v[i + width];
  return v[0];
}

static inline float max_lanes(vec v) {
  for (int width = W / 2; width > 0; width /= 2)
    for (int i = 0; i < width; i++) v[i] = v[i + width] > v[i] ? v[i + width] : v[i];
  return v[0];
}

static const ivec LANES = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* A row of scores in place: scaled, and -inf past its first ``valid`` keys. Returns its largest entry. */
static inline float scale_and_mask(vec *row, long n_cols, long valid, float scale) {
  const vec minus_inf = (vec){0} - INFINITY;
  vec top = minus_inf;
  for (long c = 0; c < n_cols / W; c++) {
    row[c] = blend(LANES + (int)(c * W) < (int)valid, row[c] * scale, minus_inf);
    top = blend(row[c] > top, row[c], top);
  }
  return max_lanes(top);
}

/* Attention dropout: keep where the hash is >= threshold (p * 2^32), scaling kept entries by inv_kept. */
typedef struct {
  unsigned long long seed;
  unsigned threshold; /* 0: no dropout */
  float inv_kept;
} dropout_t;

/* murmur3's 32-bit finalizer and splitmix64's: every input bit flips about half of the output bits. */
static inline uvec mix32(uvec h) {
  h ^= h >> 16, h *= 0x85ebca6bu, h ^= h >> 13, h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

static inline unsigned long long mix64(unsigned long long z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull, z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Rows i0..i0+R-1 (of head bh) times their dropout mask and 1 / kept share, in place. */
static void drop(float *rows, long Tp, long i0, long T, long n_cols, long bh, const dropout_t *d) {
  for (int r = 0; r < R && i0 + r < T; r++) {
    const unsigned long long key = mix64(d->seed + (unsigned long long)(bh * T + i0 + r) * 0x9e3779b97f4a7c15ull);
    const unsigned lo = (unsigned)key, hi = (unsigned)(key >> 32);
    const vec zero = {0};
    vec *row = (vec *)(rows + r * Tp);
    for (long c = 0; c < n_cols / W; c++) {
      const uvec key_index = (uvec)LANES + (unsigned)(c * W);
      const ivec keep = mix32(mix32(key_index ^ hi) ^ lo) >= d->threshold;
      row[c] = blend(keep, row[c] * d->inv_kept, zero);
    }
  }
}


static long round_up(long n, long m) { return (n + m - 1) / m * m; }

/* s[r][j] = sum_d a[r][d] * bt[d][j], for R rows of a and the first n_cols (a multiple of W) columns. */
static void rows_times_cols(const float *a, long Dp, const float *bt, long Tp, long D, long n_cols,
                            float *s) {
  for (long c = 0; c < n_cols; c += W) {
    vec acc[R] = {0};
    for (long d = 0; d < D; d++) {
      vec b = *(const vec *)(bt + d * Tp + c);
      for (int r = 0; r < R; r++) acc[r] += a[r * Dp + d] * b;
    }
    for (int r = 0; r < R; r++) *(vec *)(s + r * Tp + c) = acc[r];
  }
}

/* out[r][:] = sum_{j < n} p[r][j] * m[j][:], for R rows of p. */
static void rows_times_matrix(const float *p, long Tp, long n, const float *m, long Dp, float *out) {
  for (long c = 0; c < Dp; c += W) {
    vec acc[R] = {0};
    for (long j = 0; j < n; j++) {
      vec b = *(const vec *)(m + j * Dp + c);
      for (int r = 0; r < R; r++) acc[r] += p[r * Tp + j] * b;
    }
    for (int r = 0; r < R; r++) *(vec *)(out + r * Dp + c) = acc[r];
  }
}

/* m[j][:] += sum_r p[r][j] * a[r][:], for j < n (a multiple of 4): four rows of m at a time keep four
   independent sums in flight. */
static void add_cols_times_rows(const float *p, long Tp, long n, const float *a, long Dp, float *m) {
  for (long c = 0; c < Dp; c += W) {
    vec ar[R];
    for (int r = 0; r < R; r++) ar[r] = *(const vec *)(a + r * Dp + c);
    for (long j = 0; j < n; j += 4) {
      vec acc[4];
      for (int u = 0; u < 4; u++) acc[u] = *(vec *)(m + (j + u) * Dp + c);
      for (int r = 0; r < R; r++)
        for (int u = 0; u < 4; u++) acc[u] += p[r * Tp + j + u] * ar[r];
      for (int u = 0; u < 4; u++) *(vec *)(m + (j + u) * Dp + c) = acc[u];
    }
  }
}

/* Copies D floats per row of a strided (T x D) matrix into zero-padded rows of Dp. */
static void load_rows(const float *src, long stride, long T, long D, float *dst, long Dp) {
  for (long t = 0; t < T; t++) {
    __builtin_prefetch(src + (t + 8) * stride); /* rows a head apart: ask for the line early */
    for (long d = 0; d < D; d++) dst[t * Dp + d] = src[t * stride + d];
  }
}

/* The transpose of a local (T x Dp) matrix, already in cache, into D rows of Tp. */
static void transpose(const float *src, long Dp, long T, long D, float *dst, long Tp) {
  for (long d = 0; d < D; d++)
    for (long t = 0; t < T; t++) dst[d * Tp + t] = src[t * Dp + d];
}

static void store_rows(const float *src, long Dp, long T, long D, float *dst, long stride) {
  for (long t = 0; t < T; t++)
    for (long d = 0; d < D; d++) dst[t * stride + d] = src[t * Dp + d];
}

/* Head h of batch element b: its q, k and v rows out of c_attn's output (B, T, 3C), and k transposed. */
static void load_head(const float *qkv, long b, long h, long T, long C, long D, float *q, float *k, float *v,
                      float *kt) {
  const long Tp = round_up(T, W), Dp = round_up(D, W);
  const float *base = qkv + b * T * 3 * C + h * D;
  load_rows(base, 3 * C, T, D, q, Dp);
  load_rows(base + C, 3 * C, T, D, k, Dp);
  load_rows(base + 2 * C, 3 * C, T, D, v, Dp);
  transpose(k, Dp, T, D, kt, Tp);
}

/* Per-thread scratch: n floats, zeroed, 64-byte aligned. */
static float *scratch(long n) {
  float *p = aligned_alloc(64, round_up(n * sizeof(float), 64));
  if (p) memset(p, 0, n * sizeof(float));
  return p;
}

/* Rows i0..i0+R-1 of a block of raw scores q.k, in place, into softmax probabilities as minGPT computes
   them: scaled, e^(x - max) over keys 0..i, times 1 / sum. Each row's max and 1 / sum are kept in
   stats[2i], stats[2i+1] when stats is given. Padding rows (i >= T) come out zero. */
static void softmax_rows(float *s, long Tp, long i0, long T, long n_cols, float scale, float *stats) {
  for (int r = 0; r < R; r++) {
    const long i = i0 + r, valid = i < T ? i + 1 : 0;
    vec *row = (vec *)(s + r * Tp), sum = {0};
    const float shift = valid ? scale_and_mask(row, n_cols, valid, scale) : 0.0f;
    for (long c = 0; c < n_cols / W; c++) {
      row[c] = exp_vec(row[c] - shift);
      sum += row[c];
    }
    const float inv_sum = valid ? 1.0f / sum_lanes(sum) : 0.0f;
    for (long c = 0; c < n_cols / W; c++) row[c] *= inv_sum;
    if (stats && valid) stats[2 * i] = shift, stats[2 * i + 1] = inv_sum;
  }
}

/* The same probabilities again from the kept max and 1 / sum: bit-identical to the forward's. */
static void softmax_rows_again(float *s, long Tp, long i0, long T, long n_cols, float scale,
                               const float *stats) {
  for (int r = 0; r < R; r++) {
    const long i = i0 + r, valid = i < T ? i + 1 : 0;
    vec *row = (vec *)(s + r * Tp);
    scale_and_mask(row, n_cols, valid, scale);
    const float shift = valid ? stats[2 * i] : 0.0f, inv_sum = valid ? stats[2 * i + 1] : 0.0f;
    for (long c = 0; c < n_cols / W; c++) row[c] = exp_vec(row[c] - shift) * inv_sum;
  }
}

/* qkv: (B, T, 3C) with C = H * D; y: (B, T, C); stats: (B, H, T, 2), or NULL when no backward follows.
   Returns 0, or -1 when scratch memory ran out. */
int attention_forward(const float *qkv, float *y, float *stats, long B, long T, long H, long D, float scale,
                      unsigned long long seed, unsigned threshold, float inv_kept) {
  const long C = H * D, Tp = round_up(T, W), Dp = round_up(D, W);
  const dropout_t dropout = {seed, threshold, inv_kept};
  int failed = 0;
#pragma omp parallel
  {
    float *q = scratch(Tp * Dp), *k = scratch(Tp * Dp), *v = scratch(Tp * Dp), *kt = scratch(D * Tp);
    float *p = scratch(R * Tp), *o = scratch(R * Dp);
    if (!q || !k || !v || !kt || !p || !o) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (long bh = 0; bh < B * H; bh++) {
      int stop;
#pragma omp atomic read
      stop = failed;
      if (stop) continue; /* a thread without scratch never gets past here: it set failed itself */
      const long b = bh / H, h = bh % H;
      load_head(qkv, b, h, T, C, D, q, k, v, kt);
      for (long i0 = 0; i0 < T; i0 += R) {
        const long n = i0 + R, n_cols = round_up(n, W); /* keys 0..i0+R-1 are all any row here sees */
        rows_times_cols(q + i0 * Dp, Dp, kt, Tp, D, n_cols, p);
        softmax_rows(p, Tp, i0, T, n_cols, scale, stats ? stats + bh * T * 2 : NULL);
        if (dropout.threshold) drop(p, Tp, i0, T, n_cols, bh, &dropout);
        rows_times_matrix(p, Tp, n, v, Dp, o);
        store_rows(o, Dp, (T - i0 < R ? T - i0 : R), D, y + (b * T + i0) * C + h * D, C);
      }
    }
    free(q), free(k), free(v), free(kt), free(p), free(o);
  }
  return failed ? -1 : 0;
}

/* dy: (B, T, C); stats from the forward; dqkv: (B, T, 3C), written in full. The softmax's backward is
   minGPT's (autograd's): P * (dP - sum_j P dP). */
int attention_backward(const float *qkv, const float *dy, const float *stats, float *dqkv, long B, long T,
                       long H, long D, float scale, unsigned long long seed, unsigned threshold, float inv_kept) {
  const long C = H * D, Tp = round_up(T, W), Dp = round_up(D, W);
  const dropout_t dropout = {seed, threshold, inv_kept};
  int failed = 0;
#pragma omp parallel
  {
    float *q = scratch(Tp * Dp), *k = scratch(Tp * Dp), *v = scratch(Tp * Dp);
    float *kt = scratch(D * Tp), *vt = scratch(D * Tp);
    float *dout = scratch(Tp * Dp), *dk = scratch(Tp * Dp), *dv = scratch(Tp * Dp);
    float *p = scratch(R * Tp), *kept = scratch(R * Tp), *ds = scratch(R * Tp), *dq = scratch(R * Dp);
    if (!q || !k || !v || !kt || !vt || !dout || !dk || !dv || !p || !kept || !ds || !dq) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (long bh = 0; bh < B * H; bh++) {
      int stop;
#pragma omp atomic read
      stop = failed;
      if (stop) continue; /* a thread without scratch never gets past here: it set failed itself */
      const long b = bh / H, h = bh % H;
      load_head(qkv, b, h, T, C, D, q, k, v, kt);
      load_rows(dy + b * T * C + h * D, C, T, D, dout, Dp);
      transpose(v, Dp, T, D, vt, Tp);
      memset(dk, 0, Tp * Dp * sizeof(float));
      memset(dv, 0, Tp * Dp * sizeof(float));
      for (long i0 = 0; i0 < T; i0 += R) {
        const long n = i0 + R, n_cols = round_up(n, W);
        rows_times_cols(q + i0 * Dp, Dp, kt, Tp, D, n_cols, p);
        softmax_rows_again(p, Tp, i0, T, n_cols, scale, stats + bh * T * 2);
        const float *p_used = p; /* the probabilities the forward multiplied V by: after dropout */
        if (dropout.threshold) {
          memcpy(kept, p, R * Tp * sizeof(float));
          drop(kept, Tp, i0, T, n_cols, bh, &dropout);
          p_used = kept;
        }
        add_cols_times_rows(p_used, Tp, n, dout + i0 * Dp, Dp, dv); /* dV += P^T dO */
        rows_times_cols(dout + i0 * Dp, Dp, vt, Tp, D, n_cols, ds); /* dP = dO V^T */
        if (dropout.threshold) drop(ds, Tp, i0, T, n_cols, bh, &dropout); /* back through the dropout */
        for (int r = 0; r < R; r++) { /* dS = P * (dP - sum_j P dP), times the scale the scores got */
          const vec *pr = (const vec *)(p + r * Tp);
          vec *dsr = (vec *)(ds + r * Tp), dot = {0};
          for (long c = 0; c < n_cols / W; c++) dot += pr[c] * dsr[c];
          const float row_dot = sum_lanes(dot);
          for (long c = 0; c < n_cols / W; c++) dsr[c] = pr[c] * (dsr[c] - row_dot) * scale;
        }
        rows_times_matrix(ds, Tp, n, k, Dp, dq);             /* dQ = dS K */
        add_cols_times_rows(ds, Tp, n, q + i0 * Dp, Dp, dk); /* dK += dS^T Q */
        store_rows(dq, Dp, (T - i0 < R ? T - i0 : R), D, dqkv + (b * T + i0) * 3 * C + h * D, 3 * C);
      }
      store_rows(dk, Dp, T, D, dqkv + b * T * 3 * C + C + h * D, 3 * C);
      store_rows(dv, Dp, T, D, dqkv + b * T * 3 * C + 2 * C + h * D, 3 * C);
    }
    free(q), free(k), free(v), free(kt), free(vt), free(dout), free(dk), free(dv);
    free(p), free(kept), free(ds), free(dq);
  }
  return failed ? -1 : 0;
}
