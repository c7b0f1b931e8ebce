// cxr's CUDA kernels: the ops that candle 0.11 runs on a GPU as many small launches
// (a depthwise convolution as one convolution per channel, batch normalisation as a
// chain of broadcast ops, Adam as a dozen element-wise ops per weight). Compiled once per
// process by NVRTC (see cuda.rs); every tensor is f32, contiguous, NCHW.
//
// Each kernel mirrors a CPU kernel of the same file name in this folder and is checked
// against it in tests/cuda_kernels.rs.

#define MAX_THREADS 256

// Sums `v` over the block (blockDim.x a multiple of 32, at most MAX_THREADS); every
// thread gets the total.
__device__ double block_sum(double v, double* shared) {
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffff, v, o);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    double total = 0.0;
    for (int i = 0; i < (int)(blockDim.x / 32); i++) total += shared[i];
    return total;
}

// ---- depthwise convolution (depthwise.rs), stride 1, zero padding p -------------------

// y[plane][oy][ox] = sum_ij x[plane][oy + i - p][ox + j - p] w[channel][i][j]
template <int K>
__device__ void depthwise_forward(const float* x, const float* w, float* y, int n, int c,
                                  int h, int wd, int p, int ho, int wo) {
    long total = (long)n * c * ho * wo;
    for (long at = blockIdx.x * (long)blockDim.x + threadIdx.x; at < total;
         at += (long)gridDim.x * blockDim.x) {
        int ox = at % wo;
        long t = at / wo;
        int oy = t % ho;
        long plane = t / ho;
        int ch = plane % c;
        const float* src = x + plane * h * wd;
        const float* ker = w + ch * K * K;
        float acc = 0.0f;
#pragma unroll
        for (int i = 0; i < K; i++) {
            int iy = oy + i - p;
            if (iy < 0 || iy >= h) continue;
#pragma unroll
            for (int j = 0; j < K; j++) {
                int ix = ox + j - p;
                if (ix >= 0 && ix < wd) acc += ker[i * K + j] * src[iy * wd + ix];
            }
        }
        y[at] = acc;
    }
}

// dx[plane][iy][ix] = sum_ij dy[plane][iy + p - i][ix + p - j] w[channel][i][j]
template <int K>
__device__ void depthwise_input_grad(const float* dy, const float* w, float* dx, int n,
                                     int c, int h, int wd, int p, int ho, int wo) {
    long total = (long)n * c * h * wd;
    for (long at = blockIdx.x * (long)blockDim.x + threadIdx.x; at < total;
         at += (long)gridDim.x * blockDim.x) {
        int ix = at % wd;
        long t = at / wd;
        int iy = t % h;
        long plane = t / h;
        int ch = plane % c;
        const float* d = dy + plane * ho * wo;
        const float* ker = w + ch * K * K;
        float acc = 0.0f;
#pragma unroll
        for (int i = 0; i < K; i++) {
            int oy = iy + p - i;
            if (oy < 0 || oy >= ho) continue;
#pragma unroll
            for (int j = 0; j < K; j++) {
                int ox = ix + p - j;
                if (ox >= 0 && ox < wo) acc += ker[i * K + j] * d[oy * wo + ox];
            }
        }
        dx[at] = acc;
    }
}

// The kernel gradient, first stage: block (channel, part) sums
// dy[img][ch][oy][ox] x[img][ch][oy + i - p][ox + j - p] over its share of the
// (image, oy, ox) positions into partial[ch][part][i][j]. A second kernel adds the
// parts in order, so the result does not depend on scheduling.
template <int K>
__device__ void depthwise_kernel_grad_parts(const float* x, const float* dy, float* partial,
                                            int n, int c, int h, int wd, int p, int ho,
                                            int wo) {
    __shared__ double shared[MAX_THREADS / 32];
    int ch = blockIdx.x, part = blockIdx.y, parts = gridDim.y;
    long positions = (long)n * ho * wo;
    float acc[K * K];
#pragma unroll
    for (int e = 0; e < K * K; e++) acc[e] = 0.0f;
    for (long q = (long)part * blockDim.x + threadIdx.x; q < positions;
         q += (long)parts * blockDim.x) {
        int ox = q % wo;
        long t = q / wo;
        int oy = t % ho;
        int img = t / ho;
        long plane = (long)img * c + ch;
        float d = dy[plane * ho * wo + (long)oy * wo + ox];
        const float* src = x + plane * h * wd;
#pragma unroll
        for (int i = 0; i < K; i++) {
            int iy = oy + i - p;
            if (iy < 0 || iy >= h) continue;
#pragma unroll
            for (int j = 0; j < K; j++) {
                int ix = ox + j - p;
                if (ix >= 0 && ix < wd) acc[i * K + j] += d * src[iy * wd + ix];
            }
        }
    }
#pragma unroll
    for (int e = 0; e < K * K; e++) {
        double total = block_sum((double)acc[e], shared);
        if (threadIdx.x == 0) partial[((long)ch * parts + part) * K * K + e] = (float)total;
    }
}

#define DEPTHWISE(K)                                                                        \
    extern "C" __global__ void depthwise_forward_##K(const float* x, const float* w,       \
                                                     float* y, int n, int c, int h, int wd, \
                                                     int p, int ho, int wo) {               \
        depthwise_forward<K>(x, w, y, n, c, h, wd, p, ho, wo);                              \
    }                                                                                       \
    extern "C" __global__ void depthwise_input_grad_##K(const float* dy, const float* w,   \
                                                        float* dx, int n, int c, int h,     \
                                                        int wd, int p, int ho, int wo) {    \
        depthwise_input_grad<K>(dy, w, dx, n, c, h, wd, p, ho, wo);                         \
    }                                                                                       \
    extern "C" __global__ void depthwise_kernel_grad_parts_##K(                            \
        const float* x, const float* dy, float* partial, int n, int c, int h, int wd,       \
        int p, int ho, int wo) {                                                            \
        depthwise_kernel_grad_parts<K>(x, dy, partial, n, c, h, wd, p, ho, wo);             \
    }

DEPTHWISE(1)
DEPTHWISE(3)
DEPTHWISE(5)
DEPTHWISE(7)

// out[row] = sum over the parts of partial[row / kk][part][row % kk], in part order.
extern "C" __global__ void sum_parts(const float* partial, float* out, int rows, int kk,
                                     int parts) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    int ch = row / kk, e = row % kk;
    float total = 0.0f;
    for (int part = 0; part < parts; part++) total += partial[((long)ch * parts + part) * kk + e];
    out[row] = total;
}

// ---- direct convolution for few channels (conv.rs), stride 1, zero padding p -------

#define CONV_TX 32
#define CONV_TY 8
#define CONV_CC 8
#define CONV_OT 16

// out[n][o][y][x] = sum_cij in[n][c][y + i - p][x + j - p] wt(o, c, i, j), with
// wt(o, c, i, j) = w[o][c][i][j], or with `flip` w[c][o][K-1-i][K-1-j] (the input
// gradient: the output gradient convolved with the kernel turned and transposed); plus
// bias[o] if `has_bias`, then ReLU if `relu`.
// A block computes a 32 x 8 tile of outputs for 16 output channels: the input tile and
// the weights pass through shared memory eight input channels at a time.
template <int K>
__device__ void conv_direct(const float* in, const float* w, const float* bias, float* out,
                            int n_, int c_, int h, int wd, int o_, int p, int ho, int wo,
                            int flip, int has_bias, int relu) {
    __shared__ float tile[CONV_CC][CONV_TY + K - 1][CONV_TX + K - 1];
    __shared__ __align__(16) float wt[CONV_CC][K * K][CONV_OT];
    int groups = (o_ + CONV_OT - 1) / CONV_OT;
    int n = blockIdx.z / groups, o0 = (blockIdx.z % groups) * CONV_OT;
    int tx = threadIdx.x, ty = threadIdx.y, t = ty * CONV_TX + tx;
    int ox = blockIdx.x * CONV_TX + tx, oy = blockIdx.y * CONV_TY + ty;
    int x0 = blockIdx.x * CONV_TX - p, y0 = blockIdx.y * CONV_TY - p;
    float acc[CONV_OT];
#pragma unroll
    for (int o = 0; o < CONV_OT; o++) acc[o] = 0.0f;
    const int tw = CONV_TX + K - 1, th = CONV_TY + K - 1;
    for (int c0 = 0; c0 < c_; c0 += CONV_CC) {
        __syncthreads();
        for (int e = t; e < CONV_CC * th * tw; e += CONV_TX * CONV_TY) {
            int cc = e / (th * tw), r = (e / tw) % th, col = e % tw;
            int c = c0 + cc, iy = y0 + r, ix = x0 + col;
            float v = 0.0f;
            if (c < c_ && iy >= 0 && iy < h && ix >= 0 && ix < wd)
                v = in[(((long)n * c_ + c) * h + iy) * wd + ix];
            tile[cc][r][col] = v;
        }
        for (int e = t; e < CONV_CC * K * K * CONV_OT; e += CONV_TX * CONV_TY) {
            int cc = e / (K * K * CONV_OT), ij = (e / CONV_OT) % (K * K), oo = e % CONV_OT;
            int c = c0 + cc, o = o0 + oo, i = ij / K, j = ij % K;
            float v = 0.0f;
            if (c < c_ && o < o_)
                v = flip ? w[(((long)c * o_ + o) * K + (K - 1 - i)) * K + (K - 1 - j)]
                         : w[(((long)o * c_ + c) * K + i) * K + j];
            wt[cc][ij][oo] = v;
        }
        __syncthreads();
#pragma unroll 2
        for (int cc = 0; cc < CONV_CC; cc++) {
#pragma unroll
            for (int i = 0; i < K; i++) {
#pragma unroll
                for (int j = 0; j < K; j++) {
                    float v = tile[cc][ty + i][tx + j];
                    const float4* w4 = (const float4*)wt[cc][i * K + j];
#pragma unroll
                    for (int q = 0; q < CONV_OT / 4; q++) {
                        float4 ww = w4[q];
                        acc[4 * q] += v * ww.x;
                        acc[4 * q + 1] += v * ww.y;
                        acc[4 * q + 2] += v * ww.z;
                        acc[4 * q + 3] += v * ww.w;
                    }
                }
            }
        }
    }
    if (ox >= wo || oy >= ho) return;
#pragma unroll
    for (int oo = 0; oo < CONV_OT; oo++) {
        int o = o0 + oo;
        if (o >= o_) break;
        float v = acc[oo] + (has_bias ? bias[o] : 0.0f);
        out[(((long)n * o_ + o) * ho + oy) * wo + ox] = relu ? fmaxf(v, 0.0f) : v;
    }
}

// The kernel gradient, first stage: block (image, band of rows) sums
// dy[n][o][y][x] in[n][c][y + i - p][x + j - p] over its rows for every (o, c, i, j)
// into partial[block][o][c][i][j]. A thread takes one (o, c) pair and every
// `slices`-th row of the band, sliding a K x K window of the input along each row.
template <int K>
__device__ void conv_weight_grad_parts(const float* in, const float* dy, float* partial,
                                       int n_, int c_, int h, int wd, int o_, int p, int ho,
                                       int wo, int band) {
    extern __shared__ float sums[];
    int pairs = o_ * c_;
    int slices = pairs >= (int)blockDim.x ? 1 : blockDim.x / pairs;
    int n = blockIdx.x, y_start = blockIdx.y * band;
    int y_end = min(y_start + band, ho);
    long block = (long)blockIdx.x * gridDim.y + blockIdx.y;
    for (int pair0 = 0; pair0 < pairs; pair0 += blockDim.x) {
        int pair = pair0 + (int)threadIdx.x % (slices == 1 ? blockDim.x : pairs);
        int slice = slices == 1 ? 0 : threadIdx.x / pairs;
        bool active = pair < pairs && slice < slices;
        float acc[K * K];
#pragma unroll
        for (int e = 0; e < K * K; e++) acc[e] = 0.0f;
        if (active) {
            int o = pair / c_, c = pair % c_;
            const float* src = in + ((long)n * c_ + c) * h * wd;
            const float* d = dy + ((long)n * o_ + o) * ho * wo;
            for (int y = y_start + slice; y < y_end; y += slices) {
                float win[K][K];
#pragma unroll
                for (int i = 0; i < K; i++)
#pragma unroll
                    for (int j = 0; j < K; j++) {
                        int iy = y + i - p, ix = j - 1 - p;
                        win[i][j] = (j > 0 && iy >= 0 && iy < h && ix >= 0 && ix < wd)
                                        ? src[iy * wd + ix]
                                        : 0.0f;
                    }
                for (int x = 0; x < wo; x++) {
#pragma unroll
                    for (int i = 0; i < K; i++) {
#pragma unroll
                        for (int j = 0; j < K - 1; j++) win[i][j] = win[i][j + 1];
                        int iy = y + i - p, ix = x + K - 1 - p;
                        win[i][K - 1] =
                            (iy >= 0 && iy < h && ix >= 0 && ix < wd) ? src[iy * wd + ix] : 0.0f;
                    }
                    float g = d[y * wo + x];
#pragma unroll
                    for (int i = 0; i < K; i++)
#pragma unroll
                        for (int j = 0; j < K; j++) acc[i * K + j] += g * win[i][j];
                }
            }
        }
        // The slices of each pair added in slice order.
        __syncthreads();
        if (active)
#pragma unroll
            for (int e = 0; e < K * K; e++) sums[threadIdx.x * K * K + e] = acc[e];
        __syncthreads();
        if (slice == 0 && pair < pairs) {
            for (int e = 0; e < K * K; e++) {
                float total = 0.0f;
                for (int s = 0; s < slices; s++)
                    total += sums[(s * (slices == 1 ? blockDim.x : pairs) + (int)threadIdx.x) * K * K + e];
                partial[(block * pairs + pair) * K * K + e] = total;
            }
        }
    }
}

#define CONV(K)                                                                             \
    extern "C" __global__ void conv_direct_##K(                                            \
        const float* in, const float* w, const float* bias, float* out, int n, int c, int h,  \
        int wd, int o, int p, int ho, int wo, int flip, int has_bias, int relu) {           \
        conv_direct<K>(in, w, bias, out, n, c, h, wd, o, p, ho, wo, flip, has_bias, relu);  \
    }                                                                                       \
    extern "C" __global__ void conv_weight_grad_parts_##K(                                 \
        const float* in, const float* dy, float* partial, int n, int c, int h, int wd,      \
        int o, int p, int ho, int wo, int band) {                                           \
        conv_weight_grad_parts<K>(in, dy, partial, n, c, h, wd, o, p, ho, wo, band);        \
    }

CONV(1)
CONV(3)
CONV(5)

// out[r] = sum over the parts of partial[part][r], in part order.
extern "C" __global__ void sum_blocks(const float* partial, float* out, int rows, int parts) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float total = 0.0f;
    for (int part = 0; part < parts; part++) total += partial[(long)part * rows + r];
    out[r] = total;
}

// The gradient through a ReLU: dy where the output is positive, else zero.
extern "C" __global__ void relu_mask(const float* dy, const float* y, float* out,
                                     long total) {
    for (long at = blockIdx.x * (long)blockDim.x + threadIdx.x; at < total;
         at += (long)gridDim.x * blockDim.x)
        out[at] = y[at] > 0.0f ? dy[at] : 0.0f;
}

// out[ch] = the sum of channel ch, from batch_norm_stats_parts's parts added in order
// (a bias's gradient).
extern "C" __global__ void channel_sums(const double* partial, float* out, int c,
                                        int parts) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double s = 0.0;
    for (int part = 0; part < parts; part++) s += partial[((long)ch * parts + part) * 2];
    out[ch] = (float)s;
}

// ---- batch normalisation in training mode (batch_norm.rs) ----------------------------

// Per channel sums of x and x² in f64, block (channel, part) over its share of the
// channel's values: partial[ch][part] = (sum, sum of squares).
extern "C" __global__ void batch_norm_stats_parts(const float* x, double* partial, int n,
                                                  int c, int plane) {
    __shared__ double shared[MAX_THREADS / 32];
    int ch = blockIdx.x, part = blockIdx.y, parts = gridDim.y;
    long count = (long)n * plane;
    double s = 0.0, s2 = 0.0;
    for (long q = (long)part * blockDim.x + threadIdx.x; q < count;
         q += (long)parts * blockDim.x) {
        double v = x[((q / plane) * c + ch) * plane + q % plane];
        s += v;
        s2 += v * v;
    }
    s = block_sum(s, shared);
    s2 = block_sum(s2, shared);
    if (threadIdx.x == 0) {
        partial[((long)ch * parts + part) * 2] = s;
        partial[((long)ch * parts + part) * 2 + 1] = s2;
    }
}

// stats[ch] = mean, stats[c + ch] = biased variance, from the parts added in order.
extern "C" __global__ void batch_norm_stats(const double* partial, float* stats, int n,
                                            int c, int plane, int parts) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double s = 0.0, s2 = 0.0;
    for (int part = 0; part < parts; part++) {
        s += partial[((long)ch * parts + part) * 2];
        s2 += partial[((long)ch * parts + part) * 2 + 1];
    }
    double count = (double)n * plane;
    if (count < 1.0) count = 1.0;
    double mean = s / count, var = s2 / count - mean * mean;
    stats[ch] = (float)mean;
    stats[c + ch] = (float)(var > 0.0 ? var : 0.0);
}

// y = gamma (x - mean) / sqrt(var + eps) + beta, per channel.
extern "C" __global__ void batch_norm_forward(const float* x, const float* gamma,
                                              const float* beta, const float* stats,
                                              float* y, long total, int c, int plane,
                                              double eps) {
    for (long at = blockIdx.x * (long)blockDim.x + threadIdx.x; at < total;
         at += (long)gridDim.x * blockDim.x) {
        int ch = (at / plane) % c;
        double scale = (double)gamma[ch] / sqrt((double)stats[c + ch] + eps);
        double shift = (double)beta[ch] - (double)stats[ch] * scale;
        y[at] = x[at] * (float)scale + (float)shift;
    }
}

// The backward pass's sums, block (channel, part) over its share of the channel:
// partial[ch][part] = (sum(dy), sum(dy (x - mean))), in f64.
extern "C" __global__ void batch_norm_backward_parts(const float* x, const float* dy,
                                                     const float* stats, double* partial,
                                                     int n, int c, int plane) {
    __shared__ double shared[MAX_THREADS / 32];
    int ch = blockIdx.x, part = blockIdx.y, parts = gridDim.y;
    long count = (long)n * plane;
    double mean = stats[ch];
    double sd = 0.0, sdx = 0.0;
    for (long q = (long)part * blockDim.x + threadIdx.x; q < count;
         q += (long)parts * blockDim.x) {
        long at = ((q / plane) * c + ch) * plane + q % plane;
        sd += dy[at];
        sdx += (double)dy[at] * ((double)x[at] - mean);
    }
    sd = block_sum(sd, shared);
    sdx = block_sum(sdx, shared);
    if (threadIdx.x == 0) {
        partial[((long)ch * parts + part) * 2] = sd;
        partial[((long)ch * parts + part) * 2 + 1] = sdx;
    }
}

// out[total + ch] = dgamma = sum(dy xh), out[total + c + ch] = dbeta = sum(dy), from
// the parts added in order.
extern "C" __global__ void batch_norm_backward_sums(const double* partial,
                                                    const float* stats, float* out,
                                                    long total, int c, int parts,
                                                    double eps) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double sd = 0.0, sdx = 0.0;
    for (int part = 0; part < parts; part++) {
        sd += partial[((long)ch * parts + part) * 2];
        sdx += partial[((long)ch * parts + part) * 2 + 1];
    }
    double inv = 1.0 / sqrt((double)stats[c + ch] + eps);
    out[total + ch] = (float)(sdx * inv);
    out[total + c + ch] = (float)sd;
}

// dx = gamma / sqrt(var + eps) (dy - dbeta / m - xh dgamma / m), with the sums that
// batch_norm_backward_sums left at the end of `out`.
extern "C" __global__ void batch_norm_backward_dx(const float* x, const float* dy,
                                                  const float* gamma, const float* stats,
                                                  float* out, long total, int n, int c,
                                                  int plane, double eps) {
    double m = (double)n * plane;
    if (m < 1.0) m = 1.0;
    for (long at = blockIdx.x * (long)blockDim.x + threadIdx.x; at < total;
         at += (long)gridDim.x * blockDim.x) {
        int ch = (at / plane) % c;
        double inv = 1.0 / sqrt((double)stats[c + ch] + eps);
        double xh = ((double)x[at] - (double)stats[ch]) * inv;
        double sdx = out[total + ch], sd = out[total + c + ch];
        out[at] = (float)((double)gamma[ch] * inv * ((double)dy[at] - sd / m - xh * sdx / m));
    }
}

// ---- k x k max-pooling, stride k (max_pool.rs) ---------------------------------------

// The larger of a and b, NaN if either is; the first of equal values.
__device__ float max_nan(float a, float b) {
    return (b > a || (isnan(b) && !isnan(a))) ? b : a;
}

extern "C" __global__ void max_pool_forward(const float* x, float* y, long planes, int h,
                                            int w, int k, int ho, int wo) {
    long total = planes * ho * wo;
    for (long at = blockIdx.x * (long)blockDim.x + threadIdx.x; at < total;
         at += (long)gridDim.x * blockDim.x) {
        int col = at % wo;
        long t = at / wo;
        int row = t % ho;
        long plane = t / ho;
        const float* src = x + plane * h * w + (long)row * k * w + col * k;
        float best = src[0];
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) best = max_nan(best, src[i * w + j]);
        y[at] = best;
    }
}

// Each window's gradient to its first maximum, zero to the rest of the window; `dx`
// arrives zeroed (rows and columns outside every window stay zero).
extern "C" __global__ void max_pool_backward(const float* x, const float* dy, float* dx,
                                             long planes, int h, int w, int k, int ho,
                                             int wo) {
    long total = planes * ho * wo;
    for (long at = blockIdx.x * (long)blockDim.x + threadIdx.x; at < total;
         at += (long)gridDim.x * blockDim.x) {
        int col = at % wo;
        long t = at / wo;
        int row = t % ho;
        long plane = t / ho;
        long base = plane * h * w + (long)row * k * w + col * k;
        float best = x[base];
        int best_at = 0;
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
                if (x[base + i * w + j] > best) {
                    best = x[base + i * w + j];
                    best_at = i * w + j;
                }
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
                dx[base + i * w + j] = (i * w + j == best_at) ? dy[at] : 0.0f;
    }
}

// ---- Adam (train/optim.rs), in place --------------------------------------------------

// m += (g - m)(1 - beta), or with `square` v += (g^2 - v)(1 - beta).
extern "C" __global__ void adam_moment(float* m, const float* g, long total, float keep,
                                       int square) {
    for (long at = blockIdx.x * (long)blockDim.x + threadIdx.x; at < total;
         at += (long)gridDim.x * blockDim.x) {
        float v = square ? g[at] * g[at] : g[at];
        m[at] = m[at] + (v - m[at]) * keep;
    }
}

// w -= alpha m / (sqrt(v) + eps)
extern "C" __global__ void adam_apply(float* w, const float* m, const float* v, long total,
                                      float alpha, float eps) {
    for (long at = blockIdx.x * (long)blockDim.x + threadIdx.x; at < total;
         at += (long)gridDim.x * blockDim.x) {
        w[at] = w[at] - (m[at] / (sqrtf(v[at]) + eps)) * alpha;
    }
}
