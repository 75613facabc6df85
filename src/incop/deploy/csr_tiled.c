/* incop's CSR kernel for sparse Linear layers on a CPU ("csr-tiled" in incop.speed).

   Y[i, 0:n] = bias[i] + sum over p in row i of val[p] * X[col[p], 0:n]

   X is the layer's input transposed, (in_features, n) row-major, and Y is (out_features, n):
   a nonzero weight then scales one contiguous row of the batch, so the inner loop runs over
   the batch in whole vectors. The batch is walked in tiles of NVEC vectors that stay in
   registers across all of a row's nonzeros, and are stored once. torch's CSR kernels load and
   store the output row for every nonzero, which is most of why this runs faster at batch >= 8.
   Rows are split evenly between threads (OpenMP, when the compiler has it) when there is
   enough work.

   Built by incop.csr_tiled with the system's C compiler; vector_size is a GCC/Clang extension. */
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define NVEC 8       /* vectors per tile: 8 accumulators leave registers for the loads */
#define VBYTES 32    /* one AVX2 register; the compiler splits it on narrower hardware */
#define BLOCK 32     /* transpose block edge: two blocks of floats fit in L1 */
/* Fewer multiply-adds than this run on one thread: starting a second costs more than it saves
   (LeNet's layers at 2-4% remaining, 2 cores: batch 64, 0.7M, ran 88 us on one thread against
   120 us on two; batch 256, 2.6M, 236 us against 197 us). */
#define PARALLEL_MIN_WORK (1 << 20)

#define DEFINE(SUFFIX, T)                                                                      \
typedef T vec_##SUFFIX __attribute__((vector_size(VBYTES)));                                   \
enum { LANES_##SUFFIX = VBYTES / sizeof(T) };                                                 \
                                                                                              \
/* ReLU in place, as torch's: negatives to 0, NaN kept (the comparison is false for it) */    \
static void relu_##SUFFIX(T *y, int64_t n) {                                                  \
    for (int64_t j = 0; j < n; j++) y[j] = y[j] < (T)0 ? (T)0 : y[j];                          \
}                                                                                             \
                                                                                              \
static void rows_##SUFFIX(int64_t lo, int64_t hi, int64_t n, const int64_t *crow,              \
                          const int64_t *col, const T *val, const T *bias, const T *x, T *y,   \
                          int relu) {                                                         \
    const int64_t tile = NVEC * LANES_##SUFFIX;                                                \
    for (int64_t i = lo; i < hi; i++) {                                                        \
        const T b = bias ? bias[i] : (T)0;                                                    \
        int64_t k0 = 0;                                                                       \
        for (; k0 + tile <= n; k0 += tile) {                                                  \
            vec_##SUFFIX acc[NVEC];                                                           \
            for (int t = 0; t < NVEC; t++) acc[t] = (vec_##SUFFIX){0} + b;                    \
            for (int64_t p = crow[i]; p < crow[i + 1]; p++) {                                 \
                const vec_##SUFFIX v = (vec_##SUFFIX){0} + val[p];                            \
                const T *in = x + col[p] * n + k0;                                            \
                for (int t = 0; t < NVEC; t++) {                                              \
                    vec_##SUFFIX u; /* memcpy: rows of x need not be vector-aligned */         \
                    memcpy(&u, in + t * LANES_##SUFFIX, sizeof u);                            \
                    acc[t] += v * u;                                                          \
                }                                                                             \
            }                                                                                 \
            memcpy(y + i * n + k0, acc, sizeof acc);                                          \
        }                                                                                     \
        for (; k0 < n; k0++) { /* the batch's last columns, fewer than a tile */              \
            T s = b;                                                                          \
            for (int64_t p = crow[i]; p < crow[i + 1]; p++) s += val[p] * x[col[p] * n + k0]; \
            y[i * n + k0] = s;                                                                \
        }                                                                                     \
        if (relu) relu_##SUFFIX(y + i * n, n);                                                \
    }                                                                                         \
}                                                                                             \
                                                                                              \
static void csr_##SUFFIX(int64_t rows, int64_t n, const int64_t *crow, const int64_t *col,      \
                        const T *val, const T *bias, const T *x, T *y, int threads, int relu) { \
    if (threads <= 1 || crow[rows] * n < PARALLEL_MIN_WORK) {                                 \
        rows_##SUFFIX(0, rows, n, crow, col, val, bias, x, y, relu);                          \
        return;                                                                               \
    }                                                                                         \
    PARALLEL                                                                                  \
    {                                                                                         \
        const int64_t me = THREAD, all = THREADS;                                             \
        rows_##SUFFIX(rows * me / all, rows * (me + 1) / all, n, crow, col, val, bias, x, y,  \
                      relu);                                                                  \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* out (cols, rows) = in (rows, cols) transposed, block by block */                          \
static void transpose_##SUFFIX(int64_t rows, int64_t cols, const T *in, T *out) {             \
    for (int64_t r0 = 0; r0 < rows; r0 += BLOCK)                                              \
        for (int64_t c0 = 0; c0 < cols; c0 += BLOCK) {                                        \
            const int64_t r1 = r0 + BLOCK < rows ? r0 + BLOCK : rows;                         \
            const int64_t c1 = c0 + BLOCK < cols ? c0 + BLOCK : cols;                         \
            for (int64_t c = c0; c < c1; c++)                                                 \
                for (int64_t r = r0; r < r1; r++) out[c * rows + r] = in[r * cols + c];       \
        }                                                                                     \
}                                                                                             \
                                                                                              \
/* The entry point: Y = W X^T + bias for x (n, cols): x itself when x_is_xt (then it is X^T,  \
   (cols, n)), else transposed into scratch (cols * n values) first: one call a layer; with   \
   relu, ReLU(Y) (the epilogue of a Linear followed by a ReLU) */                             \
void incop_linear_##SUFFIX(int64_t rows, int64_t n, int64_t cols, const int64_t *crow,          \
                           const int64_t *col, const T *val, const T *bias, const T *x,        \
                           int x_is_xt, T *scratch, T *y, int threads, int relu) {            \
    if (!x_is_xt) {                                                                           \
        transpose_##SUFFIX(n, cols, x, scratch);                                              \
        x = scratch;                                                                          \
    }                                                                                         \
    csr_##SUFFIX(rows, n, crow, col, val, bias, x, y, threads, relu);                         \
}

/* Direct sparse convolution (Park et al., ICLR 2017): no unfolded input. The caller lays the
   zero-padded input out in groups of G images interleaved, (N/G, C, Hp, Wp, G): G = 1 is the
   usual channels-first layout, and a larger G puts G images in each position's vector, which
   fills the registers where maps are small or strided. Each output channel k keeps its nonzero
   weights as (offset, value) pairs, the offset of (ci, kh, kw) being the position
   ci Hp Wp + kh dh Wp + kw dw in one padded image. Every case below is then a sum over k's
   nonzeros of one contiguous run of input values, shifted by G times the offset:
   - stride 1: output position q = oh Wp + ow of a plane computed Wp wide reads input position
     q + offset, so the whole plane (OH Wp G values) is one run;
   - stride (sh, 1): each output row (OW G values) is one run;
   - other strides: each output position (G values) is one run.
   A run is walked in tiles of NVEC vectors that stay in registers across all of k's nonzeros
   and are stored once, then single vectors, then single values. Runs go to scratch as
   (OH, Wp, G), and from there to y (N, K, OH, OW), the Wp - OW extra columns dropped. The
   kernel packs each group itself (one pass, no separate zero fill) with `slack` positions of
   zeros after it (the last row's extra columns read past its plane); the caller checks every
   offset against that. */
#define DEFINE_CONV(SUFFIX, T)                                                                 \
/* torch's max: NaN wins */                                                                   \
static inline T max_##SUFFIX(T a, T b) { return (a > b || a != a) ? a : b; }                   \
                                                                                              \
/* out[j] = b + sum over p of val[p] x[G off[p] + j], for j < n */                             \
static void run_##SUFFIX(const T *x, int64_t n, int64_t G, const int64_t *off, const T *val,   \
                         int64_t p0, int64_t p1, T b, T *out) {                                \
    const int64_t tile = NVEC * LANES_##SUFFIX;                                                \
    int64_t j = 0;                                                                            \
    for (; j + tile <= n; j += tile) {                                                        \
        vec_##SUFFIX acc[NVEC];                                                               \
        for (int t = 0; t < NVEC; t++) acc[t] = (vec_##SUFFIX){0} + b;                        \
        for (int64_t p = p0; p < p1; p++) {                                                   \
            const vec_##SUFFIX v = (vec_##SUFFIX){0} + val[p];                                \
            const T *in = x + off[p] * G + j;                                                 \
            for (int t = 0; t < NVEC; t++) {                                                  \
                vec_##SUFFIX u; /* memcpy: runs need not be vector-aligned */                 \
                memcpy(&u, in + t * LANES_##SUFFIX, sizeof u);                                \
                acc[t] += v * u;                                                              \
            }                                                                                 \
        }                                                                                     \
        memcpy(out + j, acc, sizeof acc);                                                     \
    }                                                                                         \
    for (; j + LANES_##SUFFIX <= n; j += LANES_##SUFFIX) { /* short runs: a vector at a time */ \
        vec_##SUFFIX acc = (vec_##SUFFIX){0} + b;                                             \
        for (int64_t p = p0; p < p1; p++) {                                                   \
            vec_##SUFFIX u;                                                                   \
            memcpy(&u, x + off[p] * G + j, sizeof u);                                         \
            acc += ((vec_##SUFFIX){0} + val[p]) * u;                                          \
        }                                                                                     \
        memcpy(out + j, &acc, sizeof acc);                                                    \
    }                                                                                         \
    for (; j < n; j++) {                                                                      \
        T s = b;                                                                              \
        for (int64_t p = p0; p < p1; p++) s += val[p] * x[off[p] * G + j];                    \
        out[j] = s;                                                                           \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* One output channel of one group: G planes of y, `apart` values apart; the epilogue (ReLU, \
   2x2 max-pooling) applied as the plane is copied out of scratch. */                        \
static void plane_##SUFFIX(const T *x, int64_t G, int64_t Wp, int64_t OH, int64_t OW,          \
                           int64_t sh, int64_t sw, const int64_t *off, const T *val,           \
                           int64_t p0, int64_t p1, T b, T *scratch, T *y, int64_t apart,       \
                           int relu, int pool) {                                              \
    if (sh == 1 && sw == 1)                                                                   \
        run_##SUFFIX(x, OH * Wp * G, G, off, val, p0, p1, b, scratch);                        \
    else if (sw == 1)                                                                         \
        for (int64_t oh = 0; oh < OH; oh++)                                                   \
            run_##SUFFIX(x + oh * sh * Wp * G, OW * G, G, off, val, p0, p1, b,                \
                         scratch + oh * Wp * G);                                              \
    else                                                                                      \
        for (int64_t oh = 0; oh < OH; oh++)                                                   \
            for (int64_t ow = 0; ow < OW; ow++)                                               \
                run_##SUFFIX(x + (oh * sh * Wp + ow * sw) * G, G, G, off, val, p0, p1, b,     \
                             scratch + (oh * Wp + ow) * G);                                   \
    if (pool) { /* 2x2 max-pooling, stride 2, floor: the map's last odd row/column dropped */ \
        for (int64_t i = 0; i < G; i++)                                                       \
            for (int64_t ph = 0; ph < OH / 2; ph++)                                           \
                for (int64_t pw = 0; pw < OW / 2; pw++) {                                     \
                    const T *s = scratch + (2 * ph * Wp + 2 * pw) * G + i;                    \
                    T m = max_##SUFFIX(max_##SUFFIX(s[0], s[G]),                              \
                                       max_##SUFFIX(s[Wp * G], s[Wp * G + G]));               \
                    y[i * apart + ph * (OW / 2) + pw] = relu && m < (T)0 ? (T)0 : m;          \
                }                                                                             \
        return;                                                                               \
    }                                                                                         \
    if (G == 1) {                                                                             \
        for (int64_t oh = 0; oh < OH; oh++) {                                                 \
            memcpy(y + oh * OW, scratch + oh * Wp, OW * sizeof(T));                           \
            if (relu) relu_##SUFFIX(y + oh * OW, OW);                                         \
        }                                                                                     \
        return;                                                                               \
    }                                                                                         \
    for (int64_t i = 0; i < G; i++)                                                           \
        for (int64_t oh = 0; oh < OH; oh++)                                                   \
            for (int64_t ow = 0; ow < OW; ow++) {                                             \
                const T v = scratch[(oh * Wp + ow) * G + i];                                  \
                y[i * apart + oh * OW + ow] = relu && v < (T)0 ? (T)0 : v;                    \
            }                                                                                 \
}                                                                                             \
                                                                                              \
/* Group g of x (N, C, H, W) into `slot`: (C, Hp, Wp, G) zero-padded, images past N zero,    \
   then `slack` positions of zeros. Every value the kernel may read is written here. */       \
static void pack_##SUFFIX(const T *x, int64_t N, int64_t C, int64_t H, int64_t W, int64_t G,   \
                          int64_t ph, int64_t pw, int64_t Hp, int64_t Wp, int64_t slack,       \
                          int64_t g, T *slot) {                                               \
    const int64_t n0 = g * G, kept = N - n0 < G ? N - n0 : G;                                 \
    for (int64_t c = 0; c < C; c++) {                                                         \
        T *dst = slot + c * Hp * Wp * G;                                                      \
        const T *src = x + (n0 * C + c) * H * W;                                              \
        memset(dst, 0, ph * Wp * G * sizeof(T));                                              \
        memset(dst + (ph + H) * Wp * G, 0, (Hp - ph - H) * Wp * G * sizeof(T));               \
        for (int64_t h = 0; h < H; h++) {                                                     \
            T *row = dst + (ph + h) * Wp * G;                                                 \
            memset(row, 0, pw * G * sizeof(T));                                               \
            memset(row + (pw + W) * G, 0, (Wp - pw - W) * G * sizeof(T));                     \
            if (G == 1) {                                                                     \
                memcpy(row + pw, src + h * W, W * sizeof(T));                                 \
                continue;                                                                     \
            }                                                                                 \
            for (int64_t w = 0; w < W; w++) {                                                 \
                T *at = row + (pw + w) * G;                                                   \
                for (int64_t i = 0; i < kept; i++) at[i] = src[i * C * H * W + h * W + w];    \
                for (int64_t i = kept; i < G; i++) at[i] = (T)0;                              \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    memset(slot + C * Hp * Wp * G, 0, slack * G * sizeof(T));                                 \
}                                                                                             \
                                                                                              \
/* Output channels k0 .. k1 - 1 of group g, whose packed input is `in`. */                     \
static void group_##SUFFIX(const T *in, int64_t g, int64_t k0, int64_t k1, int64_t N,          \
                           int64_t K, int64_t G, int64_t Wp, int64_t OH, int64_t OW,           \
                           int64_t sh, int64_t sw, const int64_t *crow, const int64_t *off,    \
                           const T *val, const T *bias, T *scratch, T *y, int relu, int pool) { \
    const int64_t plane = pool ? (OH / 2) * (OW / 2) : OH * OW; /* of y */                    \
    const int64_t n0 = g * G, kept = N - n0 < G ? N - n0 : G; /* the last group's */         \
    for (int64_t k = k0; k < k1; k++) {                                                       \
        const T b = bias ? bias[k] : (T)0;                                                    \
        if (kept == G) {                                                                      \
            plane_##SUFFIX(in, G, Wp, OH, OW, sh, sw, off, val, crow[k], crow[k + 1], b,      \
                           scratch, y + (n0 * K + k) * plane, K * plane, relu, pool);         \
            continue;                                                                         \
        }                                                                                     \
        T *spare = scratch + OH * Wp * G; /* G planes; those past image N - 1 are padding */  \
        plane_##SUFFIX(in, G, Wp, OH, OW, sh, sw, off, val, crow[k], crow[k + 1], b, scratch, \
                       spare, plane, relu, pool);                                             \
        for (int64_t i = 0; i < kept; i++)                                                    \
            memcpy(y + ((n0 + i) * K + k) * plane, spare + i * plane, plane * sizeof(T));     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* x (N, C, H, W) contiguous; `packed` holds min(groups, threads) slots of                     \
   (C Hp Wp + slack) G values, `scratch` threads * (OH Wp + OH OW) G. With a group per        \
   thread or more, each thread packs a group into its own slot and computes it while it is    \
   in cache; with fewer (batch 1 on two threads), the groups are packed first and the         \
   threads split their output channels. */                                                    \
void incop_conv2d_##SUFFIX(const int64_t *dims, const int64_t *crow, const int64_t *off,      \
                           const T *val, const T *bias, const T *x, T *packed, T *scratch,    \
                           T *y, int threads, int relu, int pool) {                           \
    /* dims: N C H W K G ph pw Hp Wp OH OW sh sw slack, one array (a call from Python pays     \
       for every argument it converts, and a small layer's whole call is microseconds) */     \
    const int64_t N = dims[0], C = dims[1], H = dims[2], W = dims[3], K = dims[4];            \
    const int64_t G = dims[5], ph = dims[6], pw = dims[7], Hp = dims[8], Wp = dims[9];        \
    const int64_t OH = dims[10], OW = dims[11], sh = dims[12], sw = dims[13];                 \
    const int64_t slack = dims[14];                                                           \
    const int64_t groups = (N + G - 1) / G, slot = (C * Hp * Wp + slack) * G;                 \
    const int64_t spare = (OH * Wp + OH * OW) * G;                                            \
    if (threads <= 1 || crow[K] * N * OH * OW < PARALLEL_MIN_WORK) {                          \
        for (int64_t g = 0; g < groups; g++) {                                                \
            pack_##SUFFIX(x, N, C, H, W, G, ph, pw, Hp, Wp, slack, g, packed);                \
            group_##SUFFIX(packed, g, 0, K, N, K, G, Wp, OH, OW, sh, sw, crow, off, val,      \
                           bias, scratch, y, relu, pool);                                     \
        }                                                                                     \
        return;                                                                               \
    }                                                                                         \
    if (groups >= threads) {                                                                  \
        PARALLEL                                                                              \
        {                                                                                     \
            const int64_t me = THREAD, all = THREADS;                                         \
            T *mine = packed + me * slot;                                                     \
            for (int64_t g = groups * me / all; g < groups * (me + 1) / all; g++) {           \
                pack_##SUFFIX(x, N, C, H, W, G, ph, pw, Hp, Wp, slack, g, mine);              \
                group_##SUFFIX(mine, g, 0, K, N, K, G, Wp, OH, OW, sh, sw, crow, off, val,    \
                               bias, scratch + me * spare, y, relu, pool);                    \
            }                                                                                 \
        }                                                                                     \
        return;                                                                               \
    }                                                                                         \
    for (int64_t g = 0; g < groups; g++)                                                      \
        pack_##SUFFIX(x, N, C, H, W, G, ph, pw, Hp, Wp, slack, g, packed + g * slot);         \
    const int64_t items = groups * K;                                                         \
    PARALLEL                                                                                  \
    {                                                                                         \
        const int64_t me = THREAD, all = THREADS;                                             \
        for (int64_t item = items * me / all; item < items * (me + 1) / all; item++)          \
            group_##SUFFIX(packed + item / K * slot, item / K, item % K, item % K + 1, N, K,  \
                           G, Wp, OH, OW, sh, sw, crow, off, val, bias, scratch + me * spare, \
                           y, relu, pool);                                                    \
    }                                                                                         \
}

#ifdef _OPENMP
#define PARALLEL _Pragma("omp parallel num_threads(threads)")
#define THREAD omp_get_thread_num()
#define THREADS omp_get_num_threads()
#else
#define PARALLEL
#define THREAD 0
#define THREADS 1
#endif

DEFINE(f32, float)
DEFINE(f64, double)
DEFINE_CONV(f32, float)
DEFINE_CONV(f64, double)

/* What incop.csr_tiled checks before it trusts a cached library. */
int incop_csr_abi(void) { return 6; }
