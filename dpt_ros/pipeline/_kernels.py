"""CUDA C source of the pipeline kernels (compiled by CuPy's NVRTC; also compilable as C++).

Every kernel is one-dimensional over its output elements (``DPT_TID``) so the same source can be
built on the host with ``-DDPT_EMULATE`` and run thread by thread, which is how the CPU-only
test suite checks the kernel arithmetic against the NumPy path.

Pixel loaders (``kind``): 0 packed 8-bit colour, 1 packed 16-bit colour, 2 mono8, 3 mono16,
4 float32 intensity in [0, 1], 5 UYVY (yuv422), 6 YUYV (yuv422_yuy2). 16-bit values become 8-bit
as (v + 128) / 257 (= round(v / 255 * 65535)), exactly like the NumPy decoder.
"""

KERNEL_SOURCE = r"""
#ifndef DPT_EMULATE
#define DPT_TID ((long long)blockIdx.x * blockDim.x + threadIdx.x)
#define DPT_KERNEL extern "C" __global__
#define DPT_DEVICE __device__ __forceinline__
// float32 steps rounded one by one (no fused multiply-add), as NumPy and PyTorch compute them
#define DPT_MUL(a, b) __fmul_rn(a, b)
#define DPT_ADD(a, b) __fadd_rn(a, b)
#define DPT_RCP(a) __frcp_rn(a)
#else
#define DPT_MUL(a, b) ((a) * (b))
#define DPT_ADD(a, b) ((a) + (b))
#define DPT_RCP(a) (1.0f / (a))
#endif

typedef unsigned char u8;
typedef unsigned int u32;

DPT_DEVICE int dpt_clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

DPT_DEVICE u32 dpt_u16(const u8* p, int big) {
    return big ? ((u32)p[0] << 8) | p[1] : ((u32)p[1] << 8) | p[0];
}

DPT_DEVICE u32 dpt_16to8(u32 v) { return (v + 128u) / 257u; }

DPT_DEVICE float dpt_f32(const u8* p, int big) {
    union { u32 u; float f; } c;
    c.u = big ? ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3]
              : ((u32)p[3] << 24) | ((u32)p[2] << 16) | ((u32)p[1] << 8) | p[0];
    return c.f;
}

DPT_DEVICE float dpt_bits(u32 bits) {
    union { u32 u; float f; } c;
    c.u = bits;
    return c.f;
}

DPT_DEVICE float dpt_nan() { return dpt_bits(0x7fc00000u); }

DPT_DEVICE u32 dpt_sat8(int v) { return (u32)(v < 0 ? 0 : (v > 255 ? 255 : v)); }

// OpenCV's fixed-point ITU-R BT.601 (limited range) YUV -> RGB.
DPT_DEVICE void dpt_yuv(int y, int u, int v, u32 rgb[3]) {
    const int SHIFT = 20, CY = 1220542, CUB = 2116026, CUG = -409993, CVG = -852492, CVR = 1673527;
    int uu = u - 128, vv = v - 128;
    int yy = (y - 16 > 0 ? y - 16 : 0) * CY;
    int rnd = 1 << (SHIFT - 1);
    rgb[0] = dpt_sat8((yy + rnd + CVR * vv) >> SHIFT);
    rgb[1] = dpt_sat8((yy + rnd + CVG * vv + CUG * uu) >> SHIFT);
    rgb[2] = dpt_sat8((yy + rnd + CUB * uu) >> SHIFT);
}

// RGB (0..255) of pixel (x, y) of a raw image, decoded exactly like the NumPy path.
DPT_DEVICE void dpt_load(const u8* src, long long step, int x, int y, int kind, int bpp,
                         int swap, int big, u32 rgb[3]) {
    const u8* row = src + (long long)y * step;
    if (kind == 0) {
        const u8* p = row + (long long)x * bpp;
        rgb[0] = p[0]; rgb[1] = p[1]; rgb[2] = p[2];
    } else if (kind == 1) {
        const u8* p = row + (long long)x * bpp;
        rgb[0] = dpt_16to8(dpt_u16(p, big));
        rgb[1] = dpt_16to8(dpt_u16(p + 2, big));
        rgb[2] = dpt_16to8(dpt_u16(p + 4, big));
    } else if (kind == 2) {
        rgb[0] = rgb[1] = rgb[2] = row[x];
    } else if (kind == 3) {
        rgb[0] = rgb[1] = rgb[2] = dpt_16to8(dpt_u16(row + 2LL * x, big));
    } else if (kind == 4) {
        float g = dpt_f32(row + 4LL * x, big);
        if (g != g) g = 0.0f;
        g = g < 0.0f ? 0.0f : (g > 1.0f ? 1.0f : g);
        rgb[0] = rgb[1] = rgb[2] = (u32)rintf(g * 255.0f);
    } else {
        const u8* p = row + 4LL * (x >> 1);
        if (kind == 5) dpt_yuv(p[1 + 2 * (x & 1)], p[0], p[2], rgb);   // U Y0 V Y1
        else dpt_yuv(p[2 * (x & 1)], p[1], p[3], rgb);                  // Y0 U Y1 V
    }
    if (swap) { u32 t = rgb[0]; rgb[0] = rgb[2]; rgb[2] = t; }
}

// Raw image -> (h, w, 3) uint8 RGB.
DPT_KERNEL void dpt_decode(const u8* src, long long step, int h, int w, int kind, int bpp,
                           int swap, int big, u8* dst) {
    long long t = DPT_TID;
    if (t >= (long long)h * w) return;
    int x = (int)(t % w), y = (int)(t / w);
    u32 rgb[3];
    dpt_load(src, step, x, y, kind, bpp, swap, big, rgb);
    dst[3 * t] = (u8)rgb[0]; dst[3 * t + 1] = (u8)rgb[1]; dst[3 * t + 2] = (u8)rgb[2];
}

DPT_DEVICE u32 dpt_bayer_at(const u8* src, long long step, int x, int y, int itemsize, int big) {
    const u8* p = src + (long long)y * step + (long long)x * itemsize;
    return itemsize == 2 ? dpt_u16(p, big) : p[0];
}

// Bilinear demosaicing (OpenCV's interior rule: rounded averages of 2 or 4 neighbours; the
// outermost rows/columns copy their inner neighbour). ``pattern`` holds the colour (0 R, 1 G,
// 2 B) of the 2x2 cell positions: bits 0-1 (0,0), 2-3 (0,1), 4-5 (1,0), 6-7 (1,1).
DPT_KERNEL void dpt_demosaic(const u8* src, long long step, int h, int w, int pattern,
                             int itemsize, int big, u8* dst) {
    long long t = DPT_TID;
    if (t >= (long long)h * w) return;
    int x0 = (int)(t % w), y0 = (int)(t / w);
    int x = dpt_clampi(x0, 1, w - 2), y = dpt_clampi(y0, 1, h - 2);
    if (w < 3) x = x0;
    if (h < 3) y = y0;
    int own = (pattern >> (2 * (((y & 1) << 1) | (x & 1)))) & 3;
    int right = (pattern >> (2 * (((y & 1) << 1) | ((x + 1) & 1)))) & 3;
    int xm = dpt_clampi(x - 1, 0, w - 1), xp = dpt_clampi(x + 1, 0, w - 1);
    int ym = dpt_clampi(y - 1, 0, h - 1), yp = dpt_clampi(y + 1, 0, h - 1);
    u32 c = dpt_bayer_at(src, step, x, y, itemsize, big);
    u32 hsum = dpt_bayer_at(src, step, xm, y, itemsize, big) + dpt_bayer_at(src, step, xp, y, itemsize, big);
    u32 vsum = dpt_bayer_at(src, step, x, ym, itemsize, big) + dpt_bayer_at(src, step, x, yp, itemsize, big);
    u32 dsum = dpt_bayer_at(src, step, xm, ym, itemsize, big) + dpt_bayer_at(src, step, xp, ym, itemsize, big)
             + dpt_bayer_at(src, step, xm, yp, itemsize, big) + dpt_bayer_at(src, step, xp, yp, itemsize, big);
    u32 out[3];
    if (own == 1) {  // green: the other two colours lie horizontally / vertically
        u32 hv = (hsum + 1) >> 1, vv = (vsum + 1) >> 1;
        out[1] = c;
        out[right] = hv;
        out[2 - right] = vv;
    } else {
        out[own] = c;
        out[1] = (hsum + vsum + 2) >> 2;
        out[2 - own] = (dsum + 2) >> 2;
    }
    for (int k = 0; k < 3; ++k) {
        u32 v = itemsize == 2 ? dpt_16to8(out[k]) : out[k];
        dst[3 * t + k] = (u8)v;
    }
}

DPT_DEVICE void dpt_cubic(float t, float w[4]) {  // OpenCV interpolateCubic, A = -0.75
    const float A = -0.75f;
    w[0] = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A;
    w[1] = ((A + 2) * t - (A + 3)) * t * t + 1;
    w[2] = ((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1;
    w[3] = 1.f - w[0] - w[1] - w[2];
}

// The taps of output pixel (dx, dy) of an INTER_CUBIC resize (half-pixel centres, source step computed in double
// as OpenCV does): weights wx, wy, the source columns xs (replicated border); returns the first of the 4 source rows,
// which the caller clamps to the image.
DPT_DEVICE int dpt_cubic_taps(int dx, int dy, double scale_x, double scale_y, int w, float wx[4], float wy[4],
                              int xs[4]) {
    float fx = (float)((dx + 0.5) * scale_x - 0.5);
    float fy = (float)((dy + 0.5) * scale_y - 0.5);
    int sx = (int)floorf(fx), sy = (int)floorf(fy);
    dpt_cubic(fx - sx, wx);
    dpt_cubic(fy - sy, wy);
    for (int i = 0; i < 4; ++i) xs[i] = dpt_clampi(sx - 1 + i, 0, w - 1);
    return sy - 1;
}

// Fused decode + bicubic resize (OpenCV INTER_CUBIC: half-pixel centres, replicated border) +
// normalisation x * 2/255 - 1, written channel-first to out (3, oh, ow) float32.
DPT_KERNEL void dpt_resize_normalize(const u8* src, long long step, int h, int w, int kind,
                                     int bpp, int swap, int big, int oh, int ow,
                                     double scale_x, double scale_y, float* out) {
    long long t = DPT_TID;
    if (t >= (long long)oh * ow) return;
    int dx = (int)(t % ow), dy = (int)(t / ow);
    float wx[4], wy[4];
    int xs[4];
    int y0 = dpt_cubic_taps(dx, dy, scale_x, scale_y, w, wx, wy, xs);
    float acc[3] = {0.f, 0.f, 0.f};
    for (int j = 0; j < 4; ++j) {
        int yy = dpt_clampi(y0 + j, 0, h - 1);
        float row[3] = {0.f, 0.f, 0.f};
        for (int i = 0; i < 4; ++i) {
            u32 rgb[3];
            dpt_load(src, step, xs[i], yy, kind, bpp, swap, big, rgb);
            for (int c = 0; c < 3; ++c) row[c] += wx[i] * (float)rgb[c];
        }
        for (int c = 0; c < 3; ++c) acc[c] += wy[j] * row[c];
    }
    long long plane = (long long)oh * ow;
    const float k = 2.0f / 255.0f;
    for (int c = 0; c < 3; ++c) out[c * plane + t] = acc[c] * k - 1.0f;
}

// Bicubic resize (OpenCV INTER_CUBIC, as dpt_resize_normalize) of n float32 planes (h, w) -> (oh, ow):
// the official upsampling of the network's depth to the image size. One thread per output value.
DPT_KERNEL void dpt_upsample(const float* src, int n, int h, int w, int oh, int ow,
                             double scale_x, double scale_y, float* out) {
    long long t = DPT_TID;
    long long plane = (long long)oh * ow;
    if (t >= (long long)n * plane) return;
    long long r = t % plane;
    const float* s = src + (t / plane) * ((long long)h * w);
    int dx = (int)(r % ow), dy = (int)(r / ow);
    float wx[4], wy[4];
    int xs[4];
    int y0 = dpt_cubic_taps(dx, dy, scale_x, scale_y, w, wx, wy, xs);
    float acc = 0.f;
    for (int j = 0; j < 4; ++j) {
        const float* row = s + (long long)dpt_clampi(y0 + j, 0, h - 1) * w;
        float v = 0.f;
        for (int i = 0; i < 4; ++i) v += wx[i] * row[xs[i]];
        acc += wy[j] * v;
    }
    out[t] = acc;
}

// Element by element over n float32 values (src may be out): with ``metric``, metres from inverse depth,
// 1 / max(v * scale + shift, eps), each step rounded as in NumPy (NaN stays NaN); with ``ranged``, the REP 117
// range: NaN where not > 0, -inf below dmin (when dmin > 0), +inf above dmax.
DPT_KERNEL void dpt_depth(const float* src, long long n, int metric, float scale, float shift, float eps,
                          int ranged, float dmin, float dmax, float* out) {
    long long t = DPT_TID;
    if (t >= n) return;
    float d = src[t];
    if (metric) {
        d = DPT_ADD(DPT_MUL(d, scale), shift);
        d = (d > eps || d != d) ? d : eps;   // NumPy's maximum: NaN stays NaN, a tie gives eps (its sign of zero)
        d = DPT_RCP(d);
    }
    if (ranged) {
        if (!(d > 0.0f)) d = dpt_nan();
        else if (dmin > 0.0f && d < dmin) d = dpt_bits(0xff800000u);   // -inf
        else if (d > dmax) d = dpt_bits(0x7f800000u);                  // +inf
    }
    out[t] = d;
}

// Back-projection straight into the PointCloud2 layout: ``nw`` 32-bit words per point,
// x y z at words 0-2, packed 0x00RRGGBB at ``rgb_word`` (-1: none), label at ``label_word``.
// ``idx`` (may be null) lists the decimated pixels to emit (dense clouds). The ray of decimated pixel
// (u, v) is (ax[u], ay[v]), or with ``per_pixel`` (lens distortion) (ax[v * ws + u], ay[v * ws + u]),
// NaN where the pixel has none.
DPT_KERNEL void dpt_cloud(const float* depth, long long depth_row, const float* ax, const float* ay,
                          int per_pixel, int hs, int ws, int stride, const u8* rgb, long long rgb_row,
                          const u32* labels, long long label_row, const long long* idx,
                          long long n, int nw, int rgb_word, int label_word, u32* out) {
    long long t = DPT_TID;
    if (t >= n) return;
    long long p = idx ? idx[t] : t;
    int u = (int)(p % ws), v = (int)(p / ws);
    long long pu = (long long)u * stride, pv = (long long)v * stride;
    float z = depth[pv * depth_row + pu];
    float rx = per_pixel ? ax[(long long)v * ws + u] : ax[u];
    float ry = per_pixel ? ay[(long long)v * ws + u] : ay[v];
    union { float f; u32 u; } x, y, zz;
    if (z > 0.0f && z <= 3.402823466e38f && rx == rx) {  // finite and positive depth, a ray (not NaN)
        x.f = z * rx; y.f = z * ry; zz.f = z;
    } else {
        x.f = y.f = zz.f = dpt_nan();
    }
    u32* o = out + t * nw;
    o[0] = x.u; o[1] = y.u; o[2] = zz.u;
    if (rgb_word >= 0) {
        const u8* c = rgb + pv * rgb_row + pu * 3;
        o[rgb_word] = ((u32)c[0] << 16) | ((u32)c[1] << 8) | (u32)c[2];
    }
    if (label_word >= 0) o[label_word] = labels[pv * label_row + pu];
}
"""
