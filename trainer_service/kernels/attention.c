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

/* murmur3's 32-bit finalizer and splitmix64's: every input bit flips about half of the output bits. */
static inline uvec mix32(uvec h) {
  h ^= h >> 16, h *= 0x85ebca6bu, h ^= h >> 13, h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

static inline unsigned long long mix64(unsigned long long z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull, z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static long round_up(long n, long m) { return (n + m - 1) / m * m; }

/* One call: its tensors, sizes (C = H * D; T and D padded to Tp and Dp, multiples of W) and settings. */
typedef struct {
  const float *qkv, *dy, *stats_in; /* (B, T, 3C), (B, T, C), (B, H, T, 2) */
  float *y, *stats_out, *dqkv;      /* (B, T, C), (B, H, T, 2) or NULL, (B, T, 3C) */
  long B, T, H, D, C, Tp, Dp;
  float scale;
  unsigned long long seed; /* attention dropout: keep where the hash is >= threshold (p * 2^32), */
  unsigned threshold;      /* 0: no dropout */
  float inv_kept;          /* scaling what is kept by 1 / kept share */
} call_t;

static call_t call_of(long B, long T, long H, long D, float scale, unsigned long long seed, unsigned threshold,
                      float inv_kept) {
  return (call_t){.B = B, .T = T, .H = H, .D = D, .C = H * D, .Tp = round_up(T, W), .Dp = round_up(D, W),
                  .scale = scale, .seed = seed, .threshold = threshold, .inv_kept = inv_kept};
}

/* Rows i0..i0+R-1 (of head bh) times their dropout mask and 1 / kept share, in place. */
static void drop(const call_t *a, float *rows, long i0, long n_cols, long bh) {
  for (int r = 0; r < R && i0 + r < a->T; r++) {
    const unsigned long long row = bh * a->T + i0 + r, key = mix64(a->seed + row * 0x9e3779b97f4a7c15ull);
    const unsigned lo = (unsigned)key, hi = (unsigned)(key >> 32);
    const vec zero = {0};
    vec *v = (vec *)(rows + r * a->Tp);
    for (long c = 0; c < n_cols / W; c++) {
      const uvec key_index = (uvec)LANES + (unsigned)(c * W);
      const ivec keep = mix32(mix32(key_index ^ hi) ^ lo) >= a->threshold;
      v[c] = blend(keep, v[c] * a->inv_kept, zero);
    }
  }
}

/* out[r][c] = sum_{k < K} a[r][k] * b[k][c], for R rows of a and the first n_cols (a multiple of W) columns
   of b; a, b and out have row strides lda, ldb and ldo. Scores (q times k transposed), the output (p times v)
   and dQ (dS times k) are all this product. */
static void rows_times(const float *a, long lda, long K, const float *b, long ldb, long n_cols, float *out,
                       long ldo) {
  for (long c = 0; c < n_cols; c += W) {
    vec acc[R] = {0};
    for (long k = 0; k < K; k++) {
      vec bk = *(const vec *)(b + k * ldb + c);
      for (int r = 0; r < R; r++) acc[r] += a[r * lda + k] * bk;
    }
    for (int r = 0; r < R; r++) *(vec *)(out + r * ldo + c) = acc[r];
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

/* Head h of batch element b: its q, k and v rows out of c_attn's output, and k transposed. */
static void load_head(const call_t *a, long b, long h, float *q, float *k, float *v, float *kt) {
  const long C = a->C, D = a->D, T = a->T;
  const float *base = a->qkv + b * T * 3 * C + h * D;
  load_rows(base, 3 * C, T, D, q, a->Dp);
  load_rows(base + C, 3 * C, T, D, k, a->Dp);
  load_rows(base + 2 * C, 3 * C, T, D, v, a->Dp);
  transpose(k, a->Dp, T, D, kt, a->Tp);
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
static void softmax_rows(const call_t *a, float *s, long i0, long n_cols, float *stats) {
  for (int r = 0; r < R; r++) {
    const long i = i0 + r, valid = i < a->T ? i + 1 : 0;
    vec *row = (vec *)(s + r * a->Tp), sum = {0};
    const float shift = valid ? scale_and_mask(row, n_cols, valid, a->scale) : 0.0f;
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
static void softmax_rows_again(const call_t *a, float *s, long i0, long n_cols, const float *stats) {
  for (int r = 0; r < R; r++) {
    const long i = i0 + r, valid = i < a->T ? i + 1 : 0;
    vec *row = (vec *)(s + r * a->Tp);
    scale_and_mask(row, n_cols, valid, a->scale);
    const float shift = valid ? stats[2 * i] : 0.0f, inv_sum = valid ? stats[2 * i + 1] : 0.0f;
    for (long c = 0; c < n_cols / W; c++) row[c] = exp_vec(row[c] - shift) * inv_sum;
  }
}

/* Runs head(a, arena, bh) for every (batch, head) over torch's OpenMP threads. Each thread has one arena of
   arena_floats, zeroed once: the loads only ever write the same unpadded parts, so padding stays zero.
   Returns 0, or -1 when some thread got no arena (its heads are left undone). */
static int each_head(const call_t *a, long arena_floats, void (*head)(const call_t *, float *, long)) {
  int failed = 0;
#pragma omp parallel
  {
    float *arena = scratch(arena_floats);
    if (!arena) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (long bh = 0; bh < a->B * a->H; bh++)
      if (arena) head(a, arena, bh);
    free(arena);
  }
  return failed ? -1 : 0;
}

/* The forward's arena: q, k, v (Tp x Dp), k transposed (D x Tp), a block of probabilities (R x Tp) and
   of outputs (R x Dp). */
static long forward_floats(const call_t *a) { return 3 * a->Tp * a->Dp + a->D * a->Tp + R * a->Tp + R * a->Dp; }

static void forward_head(const call_t *a, float *arena, long bh) {
  const long T = a->T, D = a->D, C = a->C, Tp = a->Tp, Dp = a->Dp, b = bh / a->H, h = bh % a->H;
  float *q = arena, *k = q + Tp * Dp, *v = k + Tp * Dp, *kt = v + Tp * Dp, *p = kt + D * Tp, *o = p + R * Tp;
  load_head(a, b, h, q, k, v, kt);
  for (long i0 = 0; i0 < T; i0 += R) {
    const long n = i0 + R, n_cols = round_up(n, W); /* keys 0..i0+R-1 are all any row here sees */
    rows_times(q + i0 * Dp, Dp, D, kt, Tp, n_cols, p, Tp);
    softmax_rows(a, p, i0, n_cols, a->stats_out ? a->stats_out + bh * T * 2 : NULL);
    if (a->threshold) drop(a, p, i0, n_cols, bh);
    rows_times(p, Tp, n, v, Dp, Dp, o, Dp);
    store_rows(o, Dp, (T - i0 < R ? T - i0 : R), D, a->y + (b * T + i0) * C + h * D, C);
  }
}

/* The backward's arena: q, k, v, dO, dK, dV (Tp x Dp), k and v transposed (D x Tp), blocks of probabilities,
   of those kept by dropout and of score gradients (R x Tp), and of dQ (R x Dp). */
static long backward_floats(const call_t *a) {
  return 6 * a->Tp * a->Dp + 2 * a->D * a->Tp + 3 * R * a->Tp + R * a->Dp;
}

/* The softmax's backward is minGPT's (autograd's): P * (dP - sum_j P dP). */
static void backward_head(const call_t *a, float *arena, long bh) {
  const long T = a->T, D = a->D, C = a->C, Tp = a->Tp, Dp = a->Dp, b = bh / a->H, h = bh % a->H;
  float *q = arena, *k = q + Tp * Dp, *v = k + Tp * Dp, *dout = v + Tp * Dp, *dk = dout + Tp * Dp;
  float *dv = dk + Tp * Dp, *kt = dv + Tp * Dp, *vt = kt + D * Tp, *p = vt + D * Tp, *kept = p + R * Tp;
  float *ds = kept + R * Tp, *dq = ds + R * Tp;
  load_head(a, b, h, q, k, v, kt);
  load_rows(a->dy + b * T * C + h * D, C, T, D, dout, Dp);
  transpose(v, Dp, T, D, vt, Tp);
  memset(dk, 0, Tp * Dp * sizeof(float));
  memset(dv, 0, Tp * Dp * sizeof(float));
  for (long i0 = 0; i0 < T; i0 += R) {
    const long n = i0 + R, n_cols = round_up(n, W);
    rows_times(q + i0 * Dp, Dp, D, kt, Tp, n_cols, p, Tp);
    softmax_rows_again(a, p, i0, n_cols, a->stats_in + bh * T * 2);
    const float *p_used = p; /* the probabilities the forward multiplied V by: after dropout */
    if (a->threshold) {
      memcpy(kept, p, R * Tp * sizeof(float));
      drop(a, kept, i0, n_cols, bh);
      p_used = kept;
    }
    add_cols_times_rows(p_used, Tp, n, dout + i0 * Dp, Dp, dv); /* dV += P^T dO */
    rows_times(dout + i0 * Dp, Dp, D, vt, Tp, n_cols, ds, Tp);  /* dP = dO V^T */
    if (a->threshold) drop(a, ds, i0, n_cols, bh);              /* back through the dropout */
    for (int r = 0; r < R; r++) { /* dS = P * (dP - sum_j P dP), times the scale the scores got */
      const vec *pr = (const vec *)(p + r * Tp);
      vec *dsr = (vec *)(ds + r * Tp), dot = {0};
      for (long c = 0; c < n_cols / W; c++) dot += pr[c] * dsr[c];
      const float row_dot = sum_lanes(dot);
      for (long c = 0; c < n_cols / W; c++) dsr[c] = pr[c] * (dsr[c] - row_dot) * a->scale;
    }
    rows_times(ds, Tp, n, k, Dp, Dp, dq, Dp);            /* dQ = dS K */
    add_cols_times_rows(ds, Tp, n, q + i0 * Dp, Dp, dk); /* dK += dS^T Q */
    store_rows(dq, Dp, (T - i0 < R ? T - i0 : R), D, a->dqkv + (b * T + i0) * 3 * C + h * D, 3 * C);
  }
  store_rows(dk, Dp, T, D, a->dqkv + b * T * 3 * C + C + h * D, 3 * C);
  store_rows(dv, Dp, T, D, a->dqkv + b * T * 3 * C + 2 * C + h * D, 3 * C);
}

/* qkv: (B, T, 3C) with C = H * D; y: (B, T, C); stats: (B, H, T, 2), or NULL when no backward follows.
   Returns 0, or -1 when scratch memory ran out. */
int attention_forward(const float *qkv, float *y, float *stats, long B, long T, long H, long D, float scale,
                      unsigned long long seed, unsigned threshold, float inv_kept) {
  call_t a = call_of(B, T, H, D, scale, seed, threshold, inv_kept);
  a.qkv = qkv, a.y = y, a.stats_out = stats;
  return each_head(&a, forward_floats(&a), forward_head);
}

/* dy: (B, T, C); stats from the forward; dqkv: (B, T, 3C), written in full. */
int attention_backward(const float *qkv, const float *dy, const float *stats, float *dqkv, long B, long T,
                       long H, long D, float scale, unsigned long long seed, unsigned threshold, float inv_kept) {
  call_t a = call_of(B, T, H, D, scale, seed, threshold, inv_kept);
  a.qkv = qkv, a.dy = dy, a.stats_in = stats, a.dqkv = dqkv;
  return each_head(&a, backward_floats(&a), backward_head);
}
