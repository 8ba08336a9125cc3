/* The C ABI against naive C loops: every function on every ISA this CPU
 * runs, random shapes (0, 1, primes, tile edges), strided / transposed /
 * GQA layouts, a KV-cache decode, and every error path (status, message,
 * output untouched). C11, no dependencies. Exits non-zero on the first
 * failure. Built and run by capi/tests/run-c-tests.sh. */
#include "transformer_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U (1.0 / 16777216.0) /* f32 unit roundoff */

static int checks = 0;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);             \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static int rand_int(int lo, int hi) { return lo + (int)(next_u32() % (uint32_t)(hi - lo + 1)); }
static float rand_f(void) { return (float)((next_u32() % 20001) / 10000.0 - 1.0); }

static float *alloc_f(size_t n, float fill) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) abort();
    for (size_t i = 0; i < n; i++) p[i] = fill;
    return p;
}
static float *alloc_rand(size_t n) {
    float *p = alloc_f(n, 0.0f);
    for (size_t i = 0; i < n; i++) p[i] = rand_f();
    return p;
}

static double gelu_ref(double x, tk_gelu kind) {
    if (kind == TK_GELU_ERF) return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double ulp(double y) {
    double a = fabs(y);
    return a < 1e-38 ? 1.4e-45 : a * (1.0 / 8388608.0);
}

static const char *isa_name(tk_isa isa) {
    switch (isa) {
    case TK_ISA_SCALAR: return "scalar";
    case TK_ISA_AVX2: return "avx2";
    case TK_ISA_AVX512: return "avx512";
    case TK_ISA_NEON: return "neon";
    default: return "auto";
    }
}

/* ---- matmul ----------------------------------------------------------- */

/* A matrix of rows x cols in a buffer with the given layout:
 * 0 row-major, 1 column-major, 2 row-major with padded rows,
 * 3 column stride 2 (every other element). */
typedef struct {
    float *buf;
    size_t len;
    int64_t rs, cs;
} mat;

static mat make_mat(int rows, int cols, int layout, float fill_rand) {
    mat m;
    switch (layout) {
    case 0: m.rs = cols; m.cs = 1; break;
    case 1: m.rs = 1; m.cs = rows; break;
    case 2: m.rs = cols + 3; m.cs = 1; break;
    default: m.rs = 2 * cols + 1; m.cs = 2; break;
    }
    /* The view's extent plus 8 elements of slack (NaN canaries in C). */
    m.len = (rows && cols ? (size_t)((rows - 1) * m.rs + (cols - 1) * m.cs + 1) : 0) + 8;
    m.buf = fill_rand != 0.0f ? alloc_rand(m.len) : alloc_f(m.len, NAN);
    return m;
}

static void test_matmul(tk_config cfg, int m, int n, int k, int la, int lb, int lc,
                        tk_epilogue ep, tk_gelu g) {
    mat a = make_mat(m, k, la, 1), b = make_mat(k, n, lb, 1), c = make_mat(m, n, lc, 0);
    float *bias = alloc_rand((size_t)n);
    float alpha = rand_int(0, 3) == 0 ? 1.0f : rand_f() * 2;
    float beta = rand_int(0, 2) == 0 ? 0.0f : rand_f();
    /* C's live elements random (NaN only in the gaps: with beta = 0 C must
     * not be read, with any beta the gaps must not be written). */
    float *c0 = alloc_f(c.len, NAN);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c.buf[i * c.rs + j * c.cs] = beta == 0.0f ? NAN : rand_f();
    memcpy(c0, c.buf, c.len * sizeof(float));
    tk_status st = tk_matmul_f32(cfg, m, n, k, alpha, a.buf, a.rs, a.cs, b.buf, b.rs, b.cs, beta,
                                 c.buf, c.rs, c.cs, ep, bias, g);
    CHECK(st == TK_OK, "matmul %s %dx%dx%d: status %d (%s)", isa_name(cfg.isa), m, n, k, st,
          tk_last_error());
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                double t = (double)a.buf[i * a.rs + p * a.cs] * b.buf[p * b.rs + j * b.cs];
                s += t;
                mag += fabs(t);
            }
            double old = beta == 0.0f ? 0.0 : c0[i * c.rs + j * c.cs];
            double want = alpha * s + beta * old;
            double bb = ep == TK_EPILOGUE_NONE ? 0.0 : bias[j];
            want += bb;
            /* tests/kernels/matmul.rs's bound: 2(k+3)u(|α|S + |βc| + |bias|), then
             * the GELU's 1.13·t + 4 ULP + 1e-7. */
            double tol = 2.0 * (k + 3) * U * (fabs(alpha) * mag + fabs(beta * old) + fabs(bb)) +
                         (k + 4) * 1.4e-45;
            if (ep == TK_EPILOGUE_BIAS_GELU) {
                want = gelu_ref(want, g);
                tol = 1.13 * tol + 4 * ulp(want) + 1e-7;
            }
            double got = c.buf[i * c.rs + j * c.cs];
            CHECK(fabs(got - want) <= tol,
                  "matmul %s %dx%dx%d layouts %d%d%d ep %d: C[%d][%d] = %g, want %g (tol %g)",
                  isa_name(cfg.isa), m, n, k, la, lb, lc, ep, i, j, got, want, tol);
        }
    }
    /* Nothing outside the view written. */
    for (size_t idx = 0; idx < c.len; idx++) {
        int live = 0;
        if (m && n) {
            if (lc == 1) {
                int j = (int)(idx / (size_t)c.cs), i = (int)(idx % (size_t)c.cs);
                live = j < n && i < m && (int64_t)idx == i * c.rs + j * c.cs;
            } else {
                int i = (int)(idx / (size_t)c.rs), r = (int)(idx % (size_t)c.rs);
                live = i < m && r % c.cs == 0 && r / c.cs < n;
            }
        }
        if (!live)
            CHECK(isnan(c.buf[idx]), "matmul %s: wrote outside C at %zu", isa_name(cfg.isa), idx);
    }
    free(a.buf); free(b.buf); free(c.buf); free(c0); free(bias);
}

/* ---- attention -------------------------------------------------------- */

typedef struct {
    int b, lq, lk, h, hk, d, causal, lay; /* lay: 0 BSHD, 1 BHSD, 2 fused QKV */
    float scale;
    int has_scale;
} attn_case;

static tk_heads heads(const float *data, int b, int s, int h, int d, int lay, int fused_h) {
    tk_heads v = {data, b, s, h, d, {0, 0, 0}};
    if (lay == 0) {
        v.strides[0] = (int64_t)s * h * d; v.strides[1] = (int64_t)h * d; v.strides[2] = d;
    } else if (lay == 1) {
        v.strides[0] = (int64_t)h * s * d; v.strides[1] = d; v.strides[2] = (int64_t)s * d;
    } else { /* rows of a fused [B, S, fused_h, D] buffer */
        v.strides[0] = (int64_t)s * fused_h * d; v.strides[1] = (int64_t)fused_h * d;
        v.strides[2] = d;
    }
    return v;
}

static double at(const tk_heads *v, int b, int s, int h, int i) {
    return v->data[b * v->strides[0] + s * v->strides[1] + h * v->strides[2] + i];
}

/* Naive attention in double; checks out (BSHD via its strides) and lse. */
static void check_attention(const attn_case *c, tk_heads q, tk_heads k, tk_heads v,
                            tk_heads_mut o, const float *lse, const char *what) {
    double scale = c->has_scale ? c->scale : 1.0 / sqrt((double)c->d);
    int group = c->h / c->hk;
    double *s = malloc(sizeof(double) * (size_t)(c->lk ? c->lk : 1));
    double tol = 2.0 * (2.0 * (c->d + 3.0) * U * fabs(scale) * c->d + (2.0 * c->lk + c->d + 16.0) * 2 * U);
    for (int b = 0; b < c->b; b++)
        for (int h = 0; h < c->h; h++)
            for (int i = 0; i < c->lq; i++) {
                int hk = h / group;
                int lim = c->causal ? i + c->lk - c->lq + 1 : c->lk;
                double mx = -INFINITY;
                for (int j = 0; j < lim; j++) {
                    double t = 0;
                    for (int e = 0; e < c->d; e++) t += at(&q, b, i, h, e) * at(&k, b, j, hk, e);
                    s[j] = t * scale;
                    if (s[j] > mx) mx = s[j];
                }
                double sum = 0;
                for (int j = 0; j < lim; j++) sum += exp(s[j] - mx);
                for (int e = 0; e < c->d; e++) {
                    double want = 0;
                    for (int j = 0; j < lim; j++) want += exp(s[j] - mx) / sum * at(&v, b, j, hk, e);
                    double got = o.data[b * o.strides[0] + i * o.strides[1] + h * o.strides[2] + e];
                    CHECK(fabs(got - want) <= tol,
                          "attention %s b%d lq%d lk%d h%d/%d d%d causal %d lay %d: out[%d,%d,%d,%d] = %g, want %g",
                          what, c->b, c->lq, c->lk, c->h, c->hk, c->d, c->causal, c->lay, b, i, h, e,
                          got, want);
                }
                if (lse) {
                    double want = mx + log(sum);
                    double got = lse[(b * c->h + h) * c->lq + i];
                    CHECK(fabs(got - want) <= tol + 1e-5 * (1 + fabs(want)),
                          "attention %s lse[%d,%d,%d] = %g, want %g", what, b, h, i, got, want);
                }
            }
    free(s);
}

static void test_attention(tk_config cfg, attn_case c) {
    float *qb, *kb, *vb;
    tk_heads q, k, v;
    float *fused = NULL;
    if (c.lay == 2) { /* [B, S, H + 2·H_kv, D]: q, k, v share one buffer */
        c.lk = c.lq;
        int fh = c.h + 2 * c.hk;
        fused = alloc_rand((size_t)c.b * c.lq * fh * c.d);
        q = heads(fused, c.b, c.lq, c.h, c.d, 2, fh);
        k = heads(fused + (size_t)c.h * c.d, c.b, c.lk, c.hk, c.d, 2, fh);
        v = heads(fused + (size_t)(c.h + c.hk) * c.d, c.b, c.lk, c.hk, c.d, 2, fh);
        qb = kb = vb = NULL;
    } else {
        qb = alloc_rand((size_t)c.b * c.lq * c.h * c.d);
        kb = alloc_rand((size_t)c.b * c.lk * c.hk * c.d);
        vb = alloc_rand((size_t)c.b * c.lk * c.hk * c.d);
        q = heads(qb, c.b, c.lq, c.h, c.d, c.lay, 0);
        k = heads(kb, c.b, c.lk, c.hk, c.d, c.lay, 0);
        v = heads(vb, c.b, c.lk, c.hk, c.d, c.lay, 0);
    }
    size_t on = (size_t)c.b * c.lq * c.h * c.d;
    float *ob = alloc_f(on + 16, NAN);
    tk_heads oh = heads(ob, c.b, c.lq, c.h, c.d, c.lay == 1 ? 1 : 0, 0);
    tk_heads_mut o = {ob, oh.batch, oh.seq, oh.heads, oh.head_dim,
                      {oh.strides[0], oh.strides[1], oh.strides[2]}};
    size_t ln = (size_t)c.b * c.h * c.lq;
    float *lse = alloc_f(ln + 4, NAN);
    tk_attention_options opts = {c.causal, c.has_scale, c.scale};
    tk_status st = tk_attention_f32(cfg, q, k, v, o, opts, rand_int(0, 3) ? lse : NULL);
    CHECK(st == TK_OK, "attention: status %d (%s)", st, tk_last_error());
    int with_lse = !isnan(lse[0]) || ln == 0;
    check_attention(&c, q, k, v, o, with_lse && ln ? lse : NULL, isa_name(cfg.isa));
    for (size_t i = on; i < on + 16; i++) CHECK(isnan(ob[i]), "attention wrote past out");
    for (size_t i = ln; i < ln + 4; i++) CHECK(isnan(lse[i]), "attention wrote past lse");
    free(qb); free(kb); free(vb); free(fused); free(ob); free(lse);
}

/* A KV cache [max_len, H_kv, D] filled one token at a time; each step's
 * single query attends (causal, bottom-right) to every cached row. */
static void test_decode(tk_config cfg) {
    int h = 6, hk = 2, d = 32, max_len = 40;
    float *kc = alloc_f((size_t)max_len * hk * d, NAN), *vc = alloc_f((size_t)max_len * hk * d, NAN);
    for (int len = 1; len <= max_len; len++) {
        for (int i = 0; i < hk * d; i++) {
            kc[(size_t)(len - 1) * hk * d + i] = rand_f();
            vc[(size_t)(len - 1) * hk * d + i] = rand_f();
        }
        float *qb = alloc_rand((size_t)h * d), *ob = alloc_f((size_t)h * d, NAN);
        float lse[6];
        attn_case c = {1, 1, len, h, hk, d, 1, 0, 0.0f, 0};
        tk_heads q = heads(qb, 1, 1, h, d, 0, 0), k = heads(kc, 1, len, hk, d, 0, 0),
                 v = heads(vc, 1, len, hk, d, 0, 0);
        tk_heads_mut o = {ob, 1, 1, h, d, {(int64_t)h * d, (int64_t)h * d, d}};
        tk_attention_options opts = {1, 0, 0.0f};
        CHECK(tk_attention_f32(cfg, q, k, v, o, opts, lse) == TK_OK, "decode: %s", tk_last_error());
        check_attention(&c, q, k, v, o, lse, "decode");
        free(qb); free(ob);
    }
    free(kc); free(vc);
}

/* ---- element-wise and norms ------------------------------------------- */

static void test_elementwise(tk_config cfg, int rows, int cols) {
    size_t n = (size_t)rows * cols;
    float *x = alloc_rand(n), *bias = alloc_rand((size_t)cols), *out = alloc_f(n + 4, NAN);
    float *gamma = alloc_rand((size_t)cols), *beta = alloc_rand((size_t)cols);
    for (size_t i = 0; i < n; i++) x[i] *= 4.0f;
    for (tk_gelu g = TK_GELU_ERF; g <= TK_GELU_TANH; g++) {
        CHECK(tk_bias_gelu_f32(cfg, x, bias, out, rows, cols, g) == TK_OK, "bias_gelu: %s",
              tk_last_error());
        for (size_t i = 0; i < n; i++) {
            double want = gelu_ref((double)x[i] + bias[i % (size_t)cols], g);
            /* bias add rounds once (≤ 1.13·u·|x+b| through gelu'), then 4 ULP + 1e-7. */
            double tol = 1.13 * U * fabs((double)x[i] + bias[i % (size_t)cols]) + 4 * ulp(want) + 1e-7;
            CHECK(fabs(out[i] - want) <= tol, "bias_gelu %s [%zu] = %g, want %g", isa_name(cfg.isa),
                  i, out[i], want);
        }
        CHECK(tk_gelu_f32(cfg, x, out, (int64_t)n, g) == TK_OK, "gelu: %s", tk_last_error());
        for (size_t i = 0; i < n; i++) {
            double want = gelu_ref(x[i], g);
            CHECK(fabs(out[i] - want) <= 4 * ulp(want) + 1e-7, "gelu [%zu] = %g, want %g", i, out[i], want);
        }
        /* In place (out == x) equals out of place, bitwise. */
        float *y = alloc_f(n, 0.0f);
        memcpy(y, x, n * sizeof(float));
        CHECK(tk_bias_gelu_f32(cfg, y, bias, y, rows, cols, g) == TK_OK, "bias_gelu in place");
        CHECK(tk_bias_gelu_f32(cfg, x, bias, out, rows, cols, g) == TK_OK, "bias_gelu");
        CHECK(n == 0 || memcmp(y, out, n * sizeof(float)) == 0, "bias_gelu in place differs");
        memcpy(y, x, n * sizeof(float));
        CHECK(tk_gelu_f32(cfg, y, y, (int64_t)n, g) == TK_OK, "gelu in place");
        CHECK(tk_gelu_f32(cfg, x, out, (int64_t)n, g) == TK_OK, "gelu");
        CHECK(n == 0 || memcmp(y, out, n * sizeof(float)) == 0, "gelu in place differs");
        free(y);
    }
    CHECK(tk_add_bias_f32(cfg, x, bias, out, rows, cols) == TK_OK, "add_bias: %s", tk_last_error());
    for (size_t i = 0; i < n; i++)
        CHECK(out[i] == x[i] + bias[i % (size_t)cols], "add_bias [%zu]", i);
    for (int rms = 0; rms <= 1; rms++) {
        float eps = 1e-5f;
        tk_status st = rms ? tk_rms_norm_f32(cfg, x, gamma, out, rows, cols, eps)
                           : tk_layer_norm_f32(cfg, x, gamma, beta, out, rows, cols, eps);
        CHECK(st == TK_OK, "norm %d: %s", rms, tk_last_error());
        for (int r = 0; r < rows; r++) {
            const float *row = x + (size_t)r * cols;
            double mean = 0, var = 0, mx = 0;
            if (!rms) {
                for (int j = 0; j < cols; j++) mean += row[j];
                mean /= cols;
            }
            for (int j = 0; j < cols; j++) var += (row[j] - mean) * (row[j] - mean);
            var /= cols;
            double inv = 1.0 / sqrt(var + eps);
            for (int j = 0; j < cols; j++)
                if (fabs((row[j] - mean) * inv) > mx) mx = fabs((row[j] - mean) * inv);
            for (int j = 0; j < cols; j++) {
                double want = (row[j] - mean) * inv * gamma[j] + (rms ? 0.0 : beta[j]);
                /* tests/norm.rs's bound with spread = max|x̂| (≥ 1). */
                double spread = mx > 1 ? mx : 1;
                double tol = 2 * U * (cols + 8.0) * spread * (fabs(gamma[j]) + 1) +
                             2 * U * (fabs(want) + (rms ? 0 : fabs(beta[j])));
                double got = out[(size_t)r * cols + j];
                CHECK(fabs(got - want) <= tol, "%s %s row %d col %d = %g, want %g",
                      rms ? "rms_norm" : "layer_norm", isa_name(cfg.isa), r, j, got, want);
            }
        }
        float *y = alloc_f(n, 0.0f);
        memcpy(y, x, n * sizeof(float));
        st = rms ? tk_rms_norm_f32(cfg, y, gamma, y, rows, cols, eps)
                 : tk_layer_norm_f32(cfg, y, gamma, beta, y, rows, cols, eps);
        CHECK(st == TK_OK && (n == 0 || memcmp(y, out, n * sizeof(float)) == 0),
              "norm %d in place differs", rms);
        free(y);
    }
    for (size_t i = n; i < n + 4; i++) CHECK(isnan(out[i]), "wrote past out");
    free(x); free(bias); free(out); free(gamma); free(beta);
}

/* Every TK_MATH_* function against libm on a grid, within its stated ULP. */
static void test_map(tk_config cfg) {
    enum { N = 4001 };
    static float x[N], out[N];
    for (int f = TK_MATH_EXP; f <= TK_MATH_GELU_TANH; f++) {
        double lo = f == TK_MATH_EXP ? -87.0 : -9.0, hi = f == TK_MATH_EXP ? 88.0 : 9.0;
        for (int i = 0; i < N; i++) x[i] = (float)(lo + (hi - lo) * i / (N - 1));
        CHECK(tk_map_f32(cfg, f, x, out, N) == TK_OK, "map %d: %s", f, tk_last_error());
        for (int i = 0; i < N; i++) {
            double v = x[i], want, ulps = 3, slack = 0;
            switch (f) {
            case TK_MATH_EXP: want = exp(v); ulps = 2; break;
            case TK_MATH_ERF: want = erf(v); break;
            case TK_MATH_ERFC: want = erfc(v); ulps = v >= 0 ? 8 + 2 * v * v : 3; break;
            case TK_MATH_TANH: want = tanh(v); break;
            case TK_MATH_GELU_ERF: want = gelu_ref(v, TK_GELU_ERF); ulps = 4; slack = 1e-7; break;
            default: want = gelu_ref(v, TK_GELU_TANH); ulps = 4; slack = 1e-7; break;
            }
            /* ULP of the f32 result's binade (subnormal floor included). */
            double u = fabs(want) < 1.1754944e-38 ? 1.4e-45 : ldexp(1.0, ilogb((float)want) - 23);
            CHECK(fabs(out[i] - want) <= ulps * u + slack, "map %d %s x = %g: %g, want %g", f,
                  isa_name(cfg.isa), v, out[i], want);
        }
    }
}

static void expect(tk_status got, tk_status want, const char *arg, const char *what) {
    CHECK(got == want, "%s: status %d, want %d (%s)", what, got, want, tk_last_error());
    CHECK(strstr(tk_last_error(), arg) == tk_last_error(), "%s: message '%s' should name '%s'",
          what, tk_last_error(), arg);
}

/* ---- low-precision weights -------------------------------------------- */

static const char *fmt_name(tk_weight_format f) {
    static const char *names[] = {"f32", "bf16", "f16", "q8_0", "q4_0", "q4_1"};
    return f >= 0 && f <= 5 ? names[f] : "?";
}

/* Quantize a random k x n matrix in `fmt` / `layout` through the ABI,
 * check the dequantized values against the originals (each format's
 * rounding bound), then tk_matmul_weights against a double loop on the
 * dequantized values, within tk_matmul_f32's bound. */
static void test_weights(tk_config cfg, tk_weight_format fmt, tk_weight_layout lay, int m, int n,
                         int k, int la, tk_epilogue ep) {
    float *x = alloc_rand((size_t)k * n); /* stored order */
    int64_t wb = -1;
    tk_status st = tk_weight_bytes(fmt, k, n, &wb);
    CHECK(st == TK_OK && wb >= 0, "weight_bytes %s: %d (%s)", fmt_name(fmt), st, tk_last_error());
    int64_t per = fmt == TK_WEIGHTS_F32    ? 4
                  : fmt <= TK_WEIGHTS_F16  ? 2
                  : fmt == TK_WEIGHTS_Q8_0 ? 34
                  : fmt == TK_WEIGHTS_Q4_0 ? 18
                                           : 20;
    int64_t want_b = fmt <= TK_WEIGHTS_F16 ? per * k * n : per * (k / 32) * n;
    CHECK(wb == want_b, "weight_bytes %s %dx%d: %lld, want %lld", fmt_name(fmt), k, n, (long long)wb,
          (long long)want_b);
    void *w = malloc(wb ? (size_t)wb : 1);
    float *deq = alloc_f((size_t)k * n, NAN);
    if (!w) abort();
    st = tk_quantize_f32(fmt, x, (int64_t)k * n, w, wb);
    CHECK(st == TK_OK, "quantize %s: %d (%s)", fmt_name(fmt), st, tk_last_error());
    st = tk_dequantize_f32(fmt, w, wb, deq, (int64_t)k * n);
    CHECK(st == TK_OK, "dequantize %s: %d (%s)", fmt_name(fmt), st, tk_last_error());
    for (int b0 = 0; b0 < k * n; b0 += 32) {
        double amax = 0, lo = INFINITY, hi = -INFINITY;
        int end = b0 + 32 < k * n ? b0 + 32 : k * n;
        for (int i = b0; i < end; i++) {
            amax = fmax(amax, fabs(x[i]));
            lo = fmin(lo, x[i]);
            hi = fmax(hi, x[i]);
        }
        for (int i = b0; i < end; i++) {
            /* f32 exact; bf16/f16 half an ULP (8 / 11 significant bits);
             * Q8_0 half a step of amax/127 plus the f16 rounding of the
             * scale (127 steps · 2^-11); Q4_0 one step of amax/8 (the
             * clamp at +7 when the largest value is negative); Q4_1 half a
             * step of (max − min)/15 plus the f16 rounding of d (15 steps)
             * and of m. */
            double tol = fmt == TK_WEIGHTS_F32    ? 0
                         : fmt == TK_WEIGHTS_BF16 ? fabs(x[i]) / 256
                         : fmt == TK_WEIGHTS_F16  ? fabs(x[i]) / 2048 + 6e-8
                         : fmt == TK_WEIGHTS_Q8_0 ? amax / 127 * (0.5 + 127.0 / 2048) + 1e-7
                         : fmt == TK_WEIGHTS_Q4_0 ? amax / 8 * (1 + 8.0 / 2048) + 1e-7
                                                  : (hi - lo) / 15 * (0.5 + 15.0 / 2048) +
                                                        fabs(lo) / 2048 + 1e-6;
            CHECK(fabs(deq[i] - x[i]) <= tol, "%s value %d: %g from %g (tol %g)", fmt_name(fmt), i,
                  deq[i], x[i], tol);
        }
    }
    mat a = make_mat(m, k, la, 1), c = make_mat(m, n, 0, 0);
    float *bias = alloc_rand((size_t)n);
    float beta = rand_int(0, 2) == 0 ? 0.0f : rand_f();
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c.buf[i * c.rs + j] = beta == 0.0f ? NAN : rand_f();
    float *c0 = alloc_f(c.len, NAN);
    memcpy(c0, c.buf, c.len * sizeof(float));
    st = tk_matmul_weights(cfg, m, n, k, 1.0f, a.buf, a.rs, a.cs, fmt, lay, w, wb, beta, c.buf, c.rs,
                           c.cs, ep, bias, TK_GELU_TANH);
    CHECK(st == TK_OK, "matmul_weights %s %s %dx%dx%d: %d (%s)", isa_name(cfg.isa), fmt_name(fmt), m,
          n, k, st, tk_last_error());
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                double wv = lay == TK_LAYOUT_IN_OUT ? deq[p * n + j] : deq[j * k + p];
                double t = (double)a.buf[i * a.rs + p * a.cs] * wv;
                s += t;
                mag += fabs(t);
            }
            double old = beta == 0.0f ? 0.0 : c0[i * c.rs + j];
            double bb = ep == TK_EPILOGUE_NONE ? 0.0 : bias[j];
            double want = s + beta * old + bb;
            double tol = 2.0 * (k + 3) * U * (mag + fabs(beta * old) + fabs(bb)) + (k + 4) * 1.4e-45;
            if (ep == TK_EPILOGUE_BIAS_GELU) {
                want = gelu_ref(want, TK_GELU_TANH);
                tol = 1.13 * tol + 4 * ulp(want) + 1e-7;
            }
            double got = c.buf[i * c.rs + j];
            CHECK(fabs(got - want) <= tol, "matmul_weights %s %s lay %d %dx%dx%d: C[%d][%d] = %g, want %g",
                  isa_name(cfg.isa), fmt_name(fmt), lay, m, n, k, i, j, got, want);
        }
        for (int j = n; j < c.rs && i * c.rs + j < (int)c.len; j++)
            CHECK(isnan(c.buf[i * c.rs + j]), "matmul_weights wrote past row %d", i);
    }
    /* The int8 mode (block formats): within the quantization of A (each
     * activation moves by at most d_a/2 + 2^-23|a|, d_a = amax/127 of its
     * block) of the same reference; other formats are refused. */
    if (ep != TK_EPILOGUE_BIAS_GELU) {
        memcpy(c.buf, c0, c.len * sizeof(float));
        st = tk_matmul_weights_int8(cfg, m, n, k, 1.0f, a.buf, a.rs, a.cs, fmt, lay, w, wb, beta, c.buf,
                                    c.rs, c.cs, ep, bias, TK_GELU_TANH);
        if (fmt < TK_WEIGHTS_Q8_0) {
            CHECK(st == TK_ERR_INVALID_ARGUMENT && tk_last_error()[0] == 'w',
                  "int8 with %s weights: %d (%s)", fmt_name(fmt), st, tk_last_error());
        } else {
            CHECK(st == TK_OK, "matmul_weights_int8 %s %s: %d (%s)", isa_name(cfg.isa), fmt_name(fmt),
                  st, tk_last_error());
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double s = 0, mag = 0, q = 0;
                    for (int p = 0; p < k; p++) {
                        double wv = deq[j * k + p];
                        double av = a.buf[i * a.rs + p * a.cs];
                        double amax = 0;
                        for (int t = p / 32 * 32; t < p / 32 * 32 + 32; t++)
                            amax = fmax(amax, fabs(a.buf[i * a.rs + t * a.cs]));
                        s += av * wv;
                        mag += fabs(av * wv);
                        q += (amax / 127 / 2 + fabs(av) / 8388608.0) * fabs(wv);
                    }
                    double old = beta == 0.0f ? 0.0 : c0[i * c.rs + j];
                    double bb = ep == TK_EPILOGUE_NONE ? 0.0 : bias[j];
                    double want = s + beta * old + bb;
                    double tol = q + 4.0 * (k + 3) * U * (mag + q + fabs(beta * old) + fabs(bb));
                    double got = c.buf[i * c.rs + j];
                    CHECK(fabs(got - want) <= tol,
                          "matmul_weights_int8 %s %s %dx%dx%d: C[%d][%d] = %g, want %g (tol %g)",
                          isa_name(cfg.isa), fmt_name(fmt), m, n, k, i, j, got, want, tol);
                }
            }
        }
    }
    free(x);
    free(w);
    free(deq);
    free(a.buf);
    free(c.buf);
    free(c0);
    free(bias);
}

static void test_weight_errors(void) {
    tk_config cfg = {TK_ISA_AUTO, 1};
    float a[64], c[64], x[64];
    for (int i = 0; i < 64; i++) { a[i] = x[i] = 1.0f; c[i] = 7.0f; }
    int64_t wb = 0;
    _Alignas(8) unsigned char w[4 * 34 + 8];
    memset(w, 0, sizeof w);
    expect(tk_weight_bytes(9, 32, 2, &wb), TK_ERR_INVALID_ARGUMENT, "format", "unknown format");
    expect(tk_weight_bytes(TK_WEIGHTS_Q4_0, 40, 2, &wb), TK_ERR_SHAPE_MISMATCH, "k", "k not a multiple of 32");
    expect(tk_weight_bytes(TK_WEIGHTS_F16, 32, 2, NULL), TK_ERR_NULL_POINTER, "out", "null out");
    expect(tk_quantize_f32(TK_WEIGHTS_Q8_0, x, 40, w, 68), TK_ERR_SHAPE_MISMATCH, "count", "partial block");
    expect(tk_quantize_f32(TK_WEIGHTS_Q8_0, x, 64, w, 60), TK_ERR_SHAPE_MISMATCH, "out_bytes", "short out");
    x[3] = NAN;
    expect(tk_quantize_f32(TK_WEIGHTS_Q8_0, x, 64, w, 68), TK_ERR_INVALID_ARGUMENT, "x", "NaN input");
    x[3] = 1.0f;
    expect(tk_quantize_f32(TK_WEIGHTS_BF16, x, 16, (unsigned char *)x + 4, 32), TK_ERR_OVERLAPPING, "out",
           "quantize in place");
    CHECK(tk_quantize_f32(TK_WEIGHTS_Q8_0, x, 64, w, 68) == TK_OK, "quantize: %s", tk_last_error());
    expect(tk_matmul_weights(cfg, 1, 2, 32, 1, a, 32, 1, 7, TK_LAYOUT_OUT_IN, w, 68, 0, c, 2, 1,
                             TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_INVALID_ARGUMENT, "format", "unknown format");
    expect(tk_matmul_weights(cfg, 1, 2, 32, 1, a, 32, 1, TK_WEIGHTS_Q8_0, 5, w, 68, 0, c, 2, 1,
                             TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_INVALID_ARGUMENT, "layout", "unknown layout");
    expect(tk_matmul_weights(cfg, 1, 2, 32, 1, a, 32, 1, TK_WEIGHTS_Q8_0, TK_LAYOUT_IN_OUT, w, 68, 0, c,
                             2, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_INVALID_ARGUMENT, "layout", "blocks stored [k, n]");
    expect(tk_matmul_weights(cfg, 1, 2, 32, 1, a, 32, 1, TK_WEIGHTS_Q8_0, TK_LAYOUT_OUT_IN, w, 34, 0, c,
                             2, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_SHAPE_MISMATCH, "w", "one block short");
    expect(tk_matmul_weights(cfg, 1, 2, 32, 1, a, 32, 1, TK_WEIGHTS_Q8_0, TK_LAYOUT_OUT_IN, NULL, 68, 0,
                             c, 2, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_NULL_POINTER, "w", "null w");
    expect(tk_matmul_weights(cfg, 1, 2, 32, 1, a, 32, 1, TK_WEIGHTS_BF16, TK_LAYOUT_IN_OUT, w + 1, 128, 0,
                             c, 2, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_INVALID_ARGUMENT, "w", "misaligned bf16");
    expect(tk_matmul_weights(cfg, 1, 2, 32, 1, a, 32, 1, TK_WEIGHTS_F32, TK_LAYOUT_IN_OUT, a, 256, 0,
                             a + 2, 2, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_OVERLAPPING, "c", "c overlaps w");
    /* A NaN scale (f16 0x7E00) in the second block. */
    w[34] = 0x00;
    w[35] = 0x7E;
    expect(tk_matmul_weights(cfg, 1, 2, 32, 1, a, 32, 1, TK_WEIGHTS_Q8_0, TK_LAYOUT_OUT_IN, w, 68, 0, c,
                             2, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_INVALID_ARGUMENT, "w", "NaN scale");
    for (int i = 0; i < 64; i++) CHECK(c[i] == 7.0f, "matmul_weights wrote C on an error");
}

/* ---- errors ------------------------------------------------------------ */

static void test_errors(void) {
    tk_config cfg = {TK_ISA_AUTO, 1};
    float a[64], b[64], c[64], bias[8];
    for (int i = 0; i < 64; i++) { a[i] = b[i] = 1.0f; c[i] = 7.0f; }
    for (int i = 0; i < 8; i++) bias[i] = 0.0f;
    /* matmul */
    expect(tk_matmul_f32(cfg, 4, 4, 4, 1, NULL, 4, 1, b, 4, 1, 0, c, 4, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_NULL_POINTER, "a", "null a");
    expect(tk_matmul_f32(cfg, 4, 4, 4, 1, a, 4, 1, b, 4, 1, 0, NULL, 4, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_NULL_POINTER, "c", "null c");
    expect(tk_matmul_f32(cfg, 4, 4, 4, 1, a, 4, 1, b, 4, 1, 0, c, 4, 1, TK_EPILOGUE_BIAS, NULL, 0),
           TK_ERR_NULL_POINTER, "bias", "null bias");
    expect(tk_matmul_f32(cfg, -1, 4, 4, 1, a, 4, 1, b, 4, 1, 0, c, 4, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_INVALID_ARGUMENT, "a", "negative m");
    expect(tk_matmul_f32(cfg, 4, 4, 4, 1, a, -4, 1, b, 4, 1, 0, c, 4, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_INVALID_ARGUMENT, "a", "negative stride");
    expect(tk_matmul_f32(cfg, 4, 4, 4, 1, a, 4, 1, b, 4, 1, 0, c, 4, 1, 7, NULL, 0),
           TK_ERR_INVALID_ARGUMENT, "epilogue", "bad epilogue");
    expect(tk_matmul_f32(cfg, 4, 4, 4, 1, a, 4, 1, b, 4, 1, 0, c, 4, 1, TK_EPILOGUE_BIAS_GELU, bias, 9),
           TK_ERR_INVALID_ARGUMENT, "gelu", "bad gelu kind");
    expect(tk_matmul_f32(cfg, 4, 4, 4, 1, a, 4, 1, a, 4, 1, 0, a + 8, 4, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_OVERLAPPING, "c", "c overlaps a");
    expect(tk_matmul_f32(cfg, 4, 4, 4, 1, a, 4, 1, b, 4, 1, 0, c, 1, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_OVERLAPPING, "c", "c overlaps itself");
    expect(tk_matmul_f32(cfg, INT64_MAX / 2, 4, 4, 1, a, 4, 1, b, 4, 1, 0, c, 4, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_OUT_OF_BOUNDS, "a", "extent overflow");
    tk_config bad_isa = {99, 1}, bad_threads = {TK_ISA_AUTO, -2};
    expect(tk_matmul_f32(bad_isa, 4, 4, 4, 1, a, 4, 1, b, 4, 1, 0, c, 4, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_UNKNOWN_ISA, "cfg.isa", "unknown isa");
    expect(tk_matmul_f32(bad_threads, 4, 4, 4, 1, a, 4, 1, b, 4, 1, 0, c, 4, 1, TK_EPILOGUE_NONE, NULL, 0),
           TK_ERR_INVALID_ARGUMENT, "cfg.threads", "negative threads");
    for (tk_isa i = TK_ISA_SCALAR; i <= TK_ISA_NEON; i++) {
        if (tk_isa_available(i)) continue;
        tk_config un = {i, 1};
        expect(tk_matmul_f32(un, 4, 4, 4, 1, a, 4, 1, b, 4, 1, 0, c, 4, 1, TK_EPILOGUE_NONE, NULL, 0),
               TK_ERR_ISA_UNAVAILABLE, "isa", "unavailable isa");
    }
    for (int i = 0; i < 64; i++) CHECK(c[i] == 7.0f, "matmul wrote C on an error");
    /* An empty product needs no pointers. */
    CHECK(tk_matmul_f32(cfg, 0, 0, 0, 1, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0, 0, 0, NULL, 0) == TK_OK,
          "empty matmul: %s", tk_last_error());
    /* attention */
    tk_heads q = heads(a, 1, 2, 4, 8, 0, 0), k = heads(b, 1, 2, 3, 8, 0, 0);
    tk_heads_mut o = {c, 1, 2, 4, 8, {64, 32, 8}};
    tk_attention_options opts = {0, 0, 0.0f};
    expect(tk_attention_f32(cfg, q, k, k, o, opts, NULL), TK_ERR_SHAPE_MISMATCH, "k",
           "heads not divisible (GQA)");
    k = heads(b, 1, 0, 2, 8, 0, 0);
    expect(tk_attention_f32(cfg, q, k, k, o, opts, NULL), TK_ERR_EMPTY, "k", "no keys");
    k = heads(b, 1, 1, 2, 8, 0, 0);
    tk_attention_options causal = {1, 0, 0.0f};
    expect(tk_attention_f32(cfg, q, k, k, o, causal, NULL), TK_ERR_INVALID_ARGUMENT, "opts",
           "causal with q_len > kv_len");
    tk_attention_options inf_scale = {0, 1, INFINITY};
    expect(tk_attention_f32(cfg, q, k, k, o, inf_scale, NULL), TK_ERR_INVALID_ARGUMENT, "opts",
           "infinite scale");
    tk_heads nq = q;
    nq.data = NULL;
    expect(tk_attention_f32(cfg, nq, k, k, o, opts, NULL), TK_ERR_NULL_POINTER, "q", "null q");
    tk_heads_mut oo = {a, 1, 2, 4, 8, {64, 32, 8}};
    expect(tk_attention_f32(cfg, q, k, k, oo, opts, NULL), TK_ERR_OVERLAPPING, "out", "out overlaps q");
    tk_heads_mut self = {c, 1, 2, 4, 8, {64, 8, 8}};
    expect(tk_attention_f32(cfg, q, k, k, self, opts, NULL), TK_ERR_OVERLAPPING, "out",
           "out overlaps itself");
    nq = q;
    nq.head_dim = -8;
    expect(tk_attention_f32(cfg, nq, k, k, o, opts, NULL), TK_ERR_INVALID_ARGUMENT, "q", "negative dim");
    for (int i = 0; i < 64; i++) CHECK(c[i] == 7.0f, "attention wrote out on an error");
    /* element-wise and norms */
    expect(tk_bias_gelu_f32(cfg, a, NULL, c, 2, 4, TK_GELU_ERF), TK_ERR_NULL_POINTER, "bias", "null bias");
    expect(tk_bias_gelu_f32(cfg, a, bias, c, 2, 4, 5), TK_ERR_INVALID_ARGUMENT, "gelu", "bad kind");
    expect(tk_bias_gelu_f32(cfg, a, bias, a + 1, 2, 4, TK_GELU_ERF), TK_ERR_OVERLAPPING, "out",
           "partial overlap");
    expect(tk_gelu_f32(cfg, NULL, c, 4, TK_GELU_TANH), TK_ERR_NULL_POINTER, "x", "null x");
    expect(tk_map_f32(cfg, 17, a, c, 4), TK_ERR_INVALID_ARGUMENT, "f", "bad math fn");
    expect(tk_map_f32(cfg, TK_MATH_EXP, a, a, 4), TK_ERR_OVERLAPPING, "out", "map in place");
    expect(tk_gelu_f32(cfg, a, c, -4, TK_GELU_TANH), TK_ERR_INVALID_ARGUMENT, "n", "negative n");
    expect(tk_add_bias_f32(cfg, a, bias, a, 2, 4), TK_ERR_OVERLAPPING, "out", "add_bias in place");
    expect(tk_layer_norm_f32(cfg, a, bias, bias, c, 2, 4, -1.0f), TK_ERR_INVALID_ARGUMENT, "eps",
           "negative eps");
    expect(tk_layer_norm_f32(cfg, a, bias, NULL, c, 2, 4, 1e-5f), TK_ERR_NULL_POINTER, "beta", "null beta");
    CHECK(tk_rms_norm_f32(cfg, a, bias, c, 2, 0, 1e-5f) == TK_OK, "rows of zero columns: nothing to do");
    expect(tk_rms_norm_f32(cfg, a, bias, c, 2, 4, NAN), TK_ERR_INVALID_ARGUMENT, "eps", "NaN eps");
    for (int i = 0; i < 64; i++) CHECK(c[i] == 7.0f, "element-wise wrote out on an error");
}

int main(void) {
    CHECK(tk_abi_version() == TK_ABI_VERSION, "ABI %u, header %u", tk_abi_version(), TK_ABI_VERSION);
    CHECK(strlen(tk_version()) > 0, "version");
    tk_isa best = tk_isa_detect();
    CHECK(tk_isa_available(best) && tk_isa_available(TK_ISA_SCALAR) && tk_isa_available(TK_ISA_AUTO),
          "detect/available");
    CHECK(!tk_isa_available(42), "a value that is no ISA is not available");
    printf("capi_test: %s, best ISA %s\n", tk_version(), isa_name(best));

    test_errors();
    test_weight_errors();
    static const int edge[] = {0, 1, 2, 3, 5, 7, 8, 13, 16, 17, 31, 64, 65};
    for (tk_isa isa = TK_ISA_SCALAR; isa <= TK_ISA_NEON; isa++) {
        if (!tk_isa_available(isa)) continue;
        tk_config cfg = {isa, 1};
        for (int t = 0; t < 60; t++) {
            int m = rand_int(0, 2) ? edge[rand_int(0, 12)] : rand_int(1, 90);
            int n = rand_int(0, 2) ? edge[rand_int(0, 12)] : rand_int(1, 90);
            int k = rand_int(0, 2) ? edge[rand_int(0, 12)] : rand_int(1, 150);
            tk_config c2 = cfg;
            c2.threads = rand_int(0, 3) == 0 ? 2 : 1;
            test_matmul(c2, m, n, k, rand_int(0, 3), rand_int(0, 3), rand_int(0, 3), rand_int(0, 2),
                        rand_int(0, 1));
        }
        /* k past every level's KC (1024): the epilogue on the last k-block. */
        test_matmul(cfg, 7, 37, 1100, 0, 0, 0, TK_EPILOGUE_BIAS_GELU, TK_GELU_ERF);
        test_matmul(cfg, 70, 150, 300, 0, 1, 2, TK_EPILOGUE_BIAS, TK_GELU_ERF);
        for (int t = 0; t < 40; t++) {
            int hk = rand_int(1, 3);
            attn_case c = {rand_int(1, 2), rand_int(1, 40), 0, hk * rand_int(1, 3), hk,
                           rand_int(0, 1) ? 64 : rand_int(1, 40), rand_int(0, 1), rand_int(0, 2),
                           rand_f() * 0.5f, rand_int(0, 1)};
            c.lk = c.lq + (c.causal ? rand_int(0, 30) : rand_int(-c.lq + 1, 30));
            tk_config c2 = cfg;
            c2.threads = rand_int(0, 3) == 0 ? 2 : 1;
            test_attention(c2, c);
        }
        /* Long enough for several key blocks and split-KV on two threads. */
        attn_case big = {1, 3, 700, 4, 2, 64, 1, 0, 0.0f, 0};
        tk_config two = {isa, 2};
        test_attention(two, big);
        test_decode(cfg);
        test_map(cfg);
        for (int t = 0; t < 20; t++) {
            tk_config c2 = cfg;
            c2.threads = rand_int(0, 3) == 0 ? 0 : 1;
            test_elementwise(c2, rand_int(0, 9), rand_int(1, 3) == 1 ? edge[rand_int(1, 12)] : rand_int(1, 300));
        }
        for (int t = 0; t < 30; t++) {
            static const int ms[] = {1, 2, 5, 8, 9, 20};
            tk_weight_format f = rand_int(0, 5);
            tk_weight_layout l = f >= TK_WEIGHTS_Q8_0 ? TK_LAYOUT_OUT_IN : rand_int(0, 1);
            tk_config c2 = cfg;
            c2.threads = rand_int(0, 3) == 0 ? 2 : 1;
            test_weights(c2, f, l, ms[rand_int(0, 5)], rand_int(0, 2) ? edge[rand_int(1, 12)] : rand_int(1, 90),
                         32 * rand_int(1, 5), rand_int(0, 3), rand_int(0, 2));
        }
        printf("capi_test: %s ok\n", isa_name(isa));
    }
    printf("capi_test: all %d checks passed\n", checks);
    return 0;
}
