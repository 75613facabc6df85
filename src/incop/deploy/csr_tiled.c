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

/* What incop.csr_tiled checks before it trusts a cached library. */
int incop_csr_abi(void) { return 2; }
