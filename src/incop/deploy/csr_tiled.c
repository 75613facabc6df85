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
static void rows_##SUFFIX(int64_t lo, int64_t hi, int64_t n, const int64_t *crow,              \
                          const int64_t *col, const T *val, const T *bias, const T *x, T *y) { \
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
    }                                                                                         \
}                                                                                             \
                                                                                              \
static void csr_##SUFFIX(int64_t rows, int64_t n, const int64_t *crow, const int64_t *col,      \
                        const T *val, const T *bias, const T *x, T *y, int threads) {         \
    if (threads <= 1 || crow[rows] * n < PARALLEL_MIN_WORK) {                                 \
        rows_##SUFFIX(0, rows, n, crow, col, val, bias, x, y);                                \
        return;                                                                               \
    }                                                                                         \
    PARALLEL                                                                                  \
    {                                                                                         \
        const int64_t me = THREAD, all = THREADS;                                             \
        rows_##SUFFIX(rows * me / all, rows * (me + 1) / all, n, crow, col, val, bias, x, y); \
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
   (cols, n)), else transposed into scratch (cols * n values) first: one call a layer */      \
void incop_linear_##SUFFIX(int64_t rows, int64_t n, int64_t cols, const int64_t *crow,          \
                           const int64_t *col, const T *val, const T *bias, const T *x,        \
                           int x_is_xt, T *scratch, T *y, int threads) {                      \
    if (!x_is_xt) {                                                                           \
        transpose_##SUFFIX(n, cols, x, scratch);                                              \
        x = scratch;                                                                          \
    }                                                                                         \
    csr_##SUFFIX(rows, n, crow, col, val, bias, x, y, threads);                               \
}

/* Direct sparse convolution (Park et al., ICLR 2017): no unfolded input. Each output channel k
   keeps its nonzero weights as (offset, value) pairs, the offset of (ci, kh, kw) into one
   zero-padded image (C, Hp, Wp) being ci Hp Wp + kh dh Wp + kw dw. With stride 1, output
   position q = oh Wp + ow of a plane computed Wp wide reads input q + offset, so a whole plane
   is one 1-d sum over the nonzeros of shifted input vectors: tiles of NVEC vectors of q (then
   single vectors, for what is left of a plane shorter than a tile) stay in registers across
   all of k's nonzeros and are stored once, whatever the map's width (the
   Wp - OW extra columns of each row are computed into scratch and dropped). Other strides take
   a plain loop per output position. The caller pads the input, leaves `slack` zeros after the
   last image (the last row's extra columns read past its plane), checks every offset, and gives
   threads * OH * Wp values of scratch. Work is split by (image, output channel). */
#define DEFINE_CONV(SUFFIX, T)                                                                 \
static void plane_##SUFFIX(const T *x, int64_t Wp, int64_t OH, int64_t OW, int64_t sh,         \
                           int64_t sw, const int64_t *off, const T *val, int64_t p0,           \
                           int64_t p1, T b, T *scratch, T *y) {                                \
    if (sh == 1 && sw == 1) {                                                                 \
        const int64_t tile = NVEC * LANES_##SUFFIX, n = OH * Wp;                               \
        int64_t q0 = 0;                                                                       \
        for (; q0 + tile <= n; q0 += tile) {                                                  \
            vec_##SUFFIX acc[NVEC];                                                           \
            for (int t = 0; t < NVEC; t++) acc[t] = (vec_##SUFFIX){0} + b;                    \
            for (int64_t p = p0; p < p1; p++) {                                               \
                const vec_##SUFFIX v = (vec_##SUFFIX){0} + val[p];                            \
                const T *in = x + off[p] + q0;                                                \
                for (int t = 0; t < NVEC; t++) {                                              \
                    vec_##SUFFIX u;                                                           \
                    memcpy(&u, in + t * LANES_##SUFFIX, sizeof u);                            \
                    acc[t] += v * u;                                                          \
                }                                                                             \
            }                                                                                 \
            memcpy(scratch + q0, acc, sizeof acc);                                            \
        }                                                                                     \
        for (; q0 + LANES_##SUFFIX <= n; q0 += LANES_##SUFFIX) { /* small planes: a vector */ \
            vec_##SUFFIX acc = (vec_##SUFFIX){0} + b;                                         \
            for (int64_t p = p0; p < p1; p++) {                                               \
                vec_##SUFFIX u;                                                               \
                memcpy(&u, x + off[p] + q0, sizeof u);                                        \
                acc += ((vec_##SUFFIX){0} + val[p]) * u;                                      \
            }                                                                                 \
            memcpy(scratch + q0, &acc, sizeof acc);                                           \
        }                                                                                     \
        for (; q0 < n; q0++) {                                                                \
            T s = b;                                                                          \
            for (int64_t p = p0; p < p1; p++) s += val[p] * x[off[p] + q0];                   \
            scratch[q0] = s;                                                                  \
        }                                                                                     \
        for (int64_t oh = 0; oh < OH; oh++)                                                   \
            memcpy(y + oh * OW, scratch + oh * Wp, OW * sizeof(T));                           \
        return;                                                                               \
    }                                                                                         \
    for (int64_t oh = 0; oh < OH; oh++)                                                       \
        for (int64_t ow = 0; ow < OW; ow++) {                                                 \
            const T *in = x + oh * sh * Wp + ow * sw;                                         \
            T s = b;                                                                          \
            for (int64_t p = p0; p < p1; p++) s += val[p] * in[off[p]];                       \
            y[oh * OW + ow] = s;                                                              \
        }                                                                                     \
}                                                                                             \
                                                                                              \
static void conv_items_##SUFFIX(int64_t lo, int64_t hi, int64_t K, int64_t image,             \
                                int64_t Wp, int64_t OH, int64_t OW, int64_t sh, int64_t sw,   \
                                const int64_t *crow, const int64_t *off, const T *val,        \
                                const T *bias, const T *x, T *scratch, T *y) {                \
    for (int64_t item = lo; item < hi; item++) {                                              \
        const int64_t n = item / K, k = item % K;                                             \
        plane_##SUFFIX(x + n * image, Wp, OH, OW, sh, sw, off, val, crow[k], crow[k + 1],     \
                       bias ? bias[k] : (T)0, scratch, y + item * OH * OW);                   \
    }                                                                                         \
}                                                                                             \
                                                                                              \
void incop_conv2d_##SUFFIX(int64_t N, int64_t K, int64_t image, int64_t Wp, int64_t OH,       \
                           int64_t OW, int64_t sh, int64_t sw, const int64_t *crow,           \
                           const int64_t *off, const T *val, const T *bias, const T *x,       \
                           T *scratch, T *y, int threads) {                                   \
    const int64_t items = N * K;                                                              \
    if (threads <= 1 || crow[K] * N * OH * OW < PARALLEL_MIN_WORK) {                          \
        conv_items_##SUFFIX(0, items, K, image, Wp, OH, OW, sh, sw, crow, off, val, bias, x,  \
                            scratch, y);                                                      \
        return;                                                                               \
    }                                                                                         \
    PARALLEL                                                                                  \
    {                                                                                         \
        const int64_t me = THREAD, all = THREADS;                                             \
        conv_items_##SUFFIX(items * me / all, items * (me + 1) / all, K, image, Wp, OH, OW,   \
                            sh, sw, crow, off, val, bias, x, scratch + me * OH * Wp, y);      \
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
int incop_csr_abi(void) { return 3; }
