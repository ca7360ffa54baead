// retikd/ops/cpu/nchwc.hpp — inference kernels on a channel-blocked layout (NCHWc), the CPU path of a folded CNN
// student (deploy/cpu_engine.hpp plans a network onto them).
//
// Layout: a 4-D activation (N, C, H, W) is stored as [N][C/CB][H][W][CB], CB = one SIMD vector of floats (16 on
// AVX-512, 8 on AVX / AVX2, 4 on NEON and SSE); C is padded to a multiple of CB with zeros. Every pixel of a
// channel block is then one aligned vector, so
//   - a depthwise convolution is K·K vector FMAs per output pixel with no shuffles, no im2col and no gather;
//   - a pointwise (1×1) or dense K×K convolution is an outer product per input channel: one broadcast input
//     value times NB weight vectors (NB output-channel blocks) into an MP × NB register tile of accumulators
//     (MobileNetV2's layers: MP·NB = 24 of AVX-512's 32 registers), with no packing of the activations at all;
//   - bias, activation (ReLU, ReLU6, SiLU, sigmoid) and a residual add are applied to the tile in registers
//     before its single store (the convolution's epilogue), so a Conv-BN-act(-add) layer reads its input and
//     writes its output once.
// The padded channels stay zero through every layer: the packed weights and biases are zero there and each
// activation maps 0 to 0 (sigmoid only gates squeeze-excitation, on unpadded vectors).
//
// Kernels (all float32): pointwise_tile, direct_conv_tile (dense K×K, stride, padding, dilation; input either
// blocked or plain NCHW for a network's first layer, whose 3 channels do not fill a block), depthwise_row,
// max_pool_row, and vector exp / sigmoid / SiLU (Cody–Waite reduction, degree-7 polynomial: relative error below
// 2e-7 on the activations' range). Callers split work into tasks (rows, pixel tiles) and run them on the thread
// pool. The readable references these are checked against are ops::conv2d, ops::max_pool2d and the activations
// (tests/test_deploy.cpp).
//
// Available where GCC/Clang vector extensions are (kAvailable); elsewhere the engine runs the module path.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "retikd/ops/cpu/gemm.hpp"

namespace retikd {
namespace cpu {
namespace nchwc {

enum class Act : int { identity = 0, relu, relu6, silu, sigmoid };

#if defined(RETIKD_GEMM_VECTOR_EXTENSIONS) && !defined(RETIKD_NCHWC_DISABLE)
constexpr bool kAvailable = true;
constexpr int kBytes = gemm_detail::kVectorBytes;
#else
constexpr bool kAvailable = false;
constexpr int kBytes = 16;  // keeps the declarations compiling; nothing calls the kernels
#endif
constexpr int CB = kBytes / 4;  // floats per channel block (one vector)
// Register tiles (MP pixels × NB output blocks) by the number of vector registers: 32 on AVX-512 and AArch64,
// 16 on AVX2 / SSE (where a broadcast also needs a register).
#if defined(__AVX512F__) || defined(__aarch64__)
constexpr int kRegisters = 32;
#else
constexpr int kRegisters = 16;
#endif

#if defined(RETIKD_GEMM_VECTOR_EXTENSIONS)
typedef float vf __attribute__((vector_size(kBytes)));
typedef int32_t vi __attribute__((vector_size(kBytes)));
#else
struct vf {};
#endif

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
inline int64_t blocks(int64_t channels) { return (channels + CB - 1) / CB; }

#if defined(RETIKD_GEMM_VECTOR_EXTENSIONS)

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf splat(float x) { return vf{} + x; }

// exp(x) for float32 lanes: x = n·ln2 + r, |r| ≤ ln2/2 (Cody–Waite), e^r by its degree-7 Taylor polynomial
// (truncation error below 1.5e-8), 2^n built in the exponent bits. Inputs are clamped to [-87.3, 88.7], where
// the result is a normal float.
inline vf vexp(vf x) {
  const vf lo = splat(-87.3f), hi = splat(88.7f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const vf magic = splat(12582912.0f);  // 1.5·2^23: adding and subtracting it rounds to the nearest integer
  const vf n = (x * splat(1.44269504088896341f) + magic) - magic;
  const vf r = (x - n * splat(0.693145751953125f)) - n * splat(1.42860682030941723212e-6f);
  vf p = splat(1.0f / 5040.0f);
  p = p * r + splat(1.0f / 720.0f);
  p = p * r + splat(1.0f / 120.0f);
  p = p * r + splat(1.0f / 24.0f);
  p = p * r + splat(1.0f / 6.0f);
  p = p * r + splat(0.5f);
  p = p * r + splat(1.0f);
  p = p * r + splat(1.0f);
  const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &e, sizeof scale);
  return p * scale;
}
inline vf vsigmoid(vf x) { return splat(1.0f) / (splat(1.0f) + vexp(-x)); }

inline vf activate(vf v, Act a) {
  const vf zero = splat(0.0f);
  switch (a) {
    case Act::identity: return v;
    case Act::relu: return v < zero ? zero : v;
    case Act::relu6: {
      const vf six = splat(6.0f);
      v = v < zero ? zero : v;
      return v > six ? six : v;
    }
    case Act::silu: return v * vsigmoid(v);
    case Act::sigmoid: return vsigmoid(v);
  }
  return v;
}

// ---- pointwise (1×1, stride 1) ---------------------------------------------------------------------------------
//
// out[j][t] (output block ob0 + j, pixel p0 + t) = bias + Σ_c in[c][t] · w[j][c] (+ res) → act, for t < MP, j < NB.
//   in:  the input image's first channel block at pixel p0 ([Cb][P][CB], block stride in_plane = P·CB)
//   w:   packed weights of output block ob0: [Ob][Cpad][CB], block stride w_stride = Cpad·CB
//   out, res: output (and residual) at block ob0, pixel p0 ([Ob][P][CB], block stride out_plane)
template <int MP, int NB>
inline void pointwise_tile(int64_t in_blocks, const float* __restrict in, int64_t in_plane, const float* __restrict w,
                           int64_t w_stride, const float* __restrict bias, float* __restrict out, int64_t out_plane,
                           const float* __restrict res, Act act) {
  vf acc[MP][NB];
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) {
    const vf b = bias ? load(bias + j * CB) : vf{};
#pragma GCC unroll 32
    for (int t = 0; t < MP; ++t) acc[t][j] = b;
  }
  for (int64_t cb = 0; cb < in_blocks; ++cb) {
    const float* ip = in + cb * in_plane;
    const float* wp = w + cb * CB * CB;
#pragma GCC unroll 4
    for (int c = 0; c < CB; ++c) {
      vf wv[NB];
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) wv[j] = load(wp + j * w_stride + c * CB);
#pragma GCC unroll 32
      for (int t = 0; t < MP; ++t) {
        const float x = ip[t * CB + c];
#pragma GCC unroll 8
        for (int j = 0; j < NB; ++j) acc[t][j] += x * wv[j];
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j)
#pragma GCC unroll 32
    for (int t = 0; t < MP; ++t) {
      vf v = acc[t][j];
      if (res) v += load(res + j * out_plane + t * CB);
      store(out + j * out_plane + t * CB, activate(v, act));
    }
}

// ---- dense K×K convolution -----------------------------------------------------------------------------------------

// Geometry of a direct convolution on one image. The input is blocked ([Cb][H][W][CB], cin_block = CB) or plain
// NCHW ([C][H][W], cin_block = 1 and in_pixel = 1); the output always blocked.
struct DirectConv {
  int64_t in_blocks = 0;   // Cb (blocked) or C (plain)
  int64_t cin_block = CB;  // input channels per block: CB, or 1 for plain NCHW
  int64_t H = 0, W = 0, OH = 0, OW = 0;
  int64_t in_plane = 0;    // floats per input block plane: H·W·cin_block
  int64_t in_pixel = CB;   // floats per input pixel within a plane: cin_block
  int64_t out_plane = 0;   // OH·OW·CB
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  // Packed weights: [Ob][in_blocks][kh][kw][cin_block][CB]; w_stride = in_blocks·kh·kw·cin_block·CB.
  int64_t w_stride = 0;
};

// Output pixels (oh, ow0 .. ow0 + MP) of output blocks ob .. ob + NB, taps rows [kh0, kh1) (those inside the
// image). CHECK: test each tap column against the image (border pixels; MP is 1 there).
template <int MP, int NB, bool CHECK>
inline void direct_conv_tile(const DirectConv& d, const float* __restrict in, const float* __restrict w,
                             const float* __restrict bias, float* __restrict out, const float* __restrict res,
                             int64_t oh, int64_t ow0, int64_t kh0, int64_t kh1, Act act) {
  vf acc[MP][NB];
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) {
    const vf b = bias ? load(bias + j * CB) : vf{};
#pragma GCC unroll 32
    for (int t = 0; t < MP; ++t) acc[t][j] = b;
  }
  const int64_t cib = d.cin_block;
  for (int64_t cb = 0; cb < d.in_blocks; ++cb) {
    for (int64_t ki = kh0; ki < kh1; ++ki) {
      const int64_t ih = oh * d.sh - d.ph + ki * d.dh;
      const float* row = in + cb * d.in_plane + ih * d.W * d.in_pixel;
      const float* wk = w + ((cb * d.kh + ki) * d.kw) * cib * CB;
      for (int64_t kj = 0; kj < d.kw; ++kj) {
        const int64_t iw0 = ow0 * d.sw - d.pw + kj * d.dw;
        if (CHECK && (iw0 < 0 || iw0 >= d.W)) continue;  // MP == 1 on the checked path
        const float* ip = row + iw0 * d.in_pixel;
        const float* wp = wk + kj * cib * CB;
        for (int64_t c = 0; c < cib; ++c) {
          vf wv[NB];
#pragma GCC unroll 8
          for (int j = 0; j < NB; ++j) wv[j] = load(wp + j * d.w_stride + c * CB);
#pragma GCC unroll 32
          for (int t = 0; t < MP; ++t) {
            const float x = ip[t * d.sw * d.in_pixel + c];
#pragma GCC unroll 8
            for (int j = 0; j < NB; ++j) acc[t][j] += x * wv[j];
          }
        }
      }
    }
  }
  float* o = out + (oh * d.OW + ow0) * CB;
  const float* r = res ? res + (oh * d.OW + ow0) * CB : nullptr;
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j)
#pragma GCC unroll 32
    for (int t = 0; t < MP; ++t) {
      vf v = acc[t][j];
      if (r) v += load(r + j * d.out_plane + t * CB);
      store(o + j * d.out_plane + t * CB, activate(v, act));
    }
}

// The output columns whose taps all lie inside the image: [lo, hi).
inline void direct_interior(const DirectConv& d, int64_t& lo, int64_t& hi) {
  lo = (d.pw + d.sw - 1) / d.sw;
  const int64_t last = d.W - 1 - (d.kw - 1) * d.dw + d.pw;  // ow·sw ≤ last
  hi = last < 0 ? 0 : last / d.sw + 1;
  hi = std::min(hi, d.OW);
  lo = std::min(lo, hi);
}

// One output row of NB output blocks for one image: the interior in MP-wide tiles (the last tile shifted back to
// end at the interior's end, recomputing a few pixels, when the interior is at least MP wide), the rest pixel by
// pixel, border pixels with tap checks.
template <int MP, int NB>
inline void direct_conv_row(const DirectConv& d, const float* in, const float* w, const float* bias, float* out,
                            const float* res, int64_t oh, Act act) {
  int64_t kh0 = 0, kh1 = d.kh;
  while (kh0 < kh1 && oh * d.sh - d.ph + kh0 * d.dh < 0) ++kh0;
  while (kh1 > kh0 && oh * d.sh - d.ph + (kh1 - 1) * d.dh >= d.H) --kh1;
  int64_t lo, hi;
  direct_interior(d, lo, hi);
  for (int64_t ow = 0; ow < lo; ++ow) direct_conv_tile<1, NB, true>(d, in, w, bias, out, res, oh, ow, kh0, kh1, act);
  for (int64_t ow = hi; ow < d.OW; ++ow) direct_conv_tile<1, NB, true>(d, in, w, bias, out, res, oh, ow, kh0, kh1, act);
  if (hi - lo >= MP) {
    for (int64_t ow = lo; ow < hi; ow += MP)
      direct_conv_tile<MP, NB, false>(d, in, w, bias, out, res, oh, std::min(ow, hi - MP), kh0, kh1, act);
  } else {
    for (int64_t ow = lo; ow < hi; ++ow) direct_conv_tile<1, NB, false>(d, in, w, bias, out, res, oh, ow, kh0, kh1, act);
  }
}

// ---- depthwise -----------------------------------------------------------------------------------------------------

// One output row of one channel block: out[ow] = bias + Σ taps in[ih][iw] · w[ki][kj] (+ res) → act. in: the block's
// plane [H][W][CB]; w: [kh][kw][CB]; out / res: the output row [OW][CB].
struct Depthwise {
  int64_t H = 0, W = 0, OH = 0, OW = 0;
  int64_t k = 3, s = 1, p = 1;  // square kernel, stride, top / left padding (the bottom / right follows from OH, OW)
};

template <int K>
inline void depthwise_row(const Depthwise& d, const float* __restrict in, const float* __restrict w, vf bias,
                          float* __restrict out, const float* __restrict res, int64_t oh, Act act) {
  const int64_t k = K > 0 ? K : d.k;
  int64_t k0 = 0, k1 = k;
  while (k0 < k1 && oh * d.s - d.p + k0 < 0) ++k0;
  while (k1 > k0 && oh * d.s - d.p + k1 - 1 >= d.H) --k1;
  // interior columns: every tap inside the row
  int64_t lo = (d.p + d.s - 1) / d.s;
  const int64_t last = d.W - k + d.p;
  int64_t hi = last < 0 ? 0 : std::min(d.OW, last / d.s + 1);
  lo = std::min(lo, hi);
  auto finish = [&](int64_t ow, vf v) {
    if (res) v += load(res + ow * CB);
    store(out + ow * CB, activate(v, act));
  };
  auto checked = [&](int64_t ow) {
    vf acc = bias;
    for (int64_t ki = k0; ki < k1; ++ki) {
      const float* row = in + (oh * d.s - d.p + ki) * d.W * CB;
      for (int64_t kj = 0; kj < k; ++kj) {
        const int64_t iw = ow * d.s - d.p + kj;
        if (iw < 0 || iw >= d.W) continue;
        acc += load(row + iw * CB) * load(w + (ki * k + kj) * CB);
      }
    }
    finish(ow, acc);
  };
  for (int64_t ow = 0; ow < lo; ++ow) checked(ow);
  constexpr int T = 8;
  int64_t ow = lo;
  for (; ow + T <= hi; ow += T) {
    vf acc[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = bias;
    for (int64_t ki = k0; ki < k1; ++ki) {
      const float* row = in + ((oh * d.s - d.p + ki) * d.W + ow * d.s - d.p) * CB;
#pragma GCC unroll 5
      for (int64_t kj = 0; kj < k; ++kj) {
        const vf wv = load(w + (ki * k + kj) * CB);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) acc[t] += load(row + (t * d.s + kj) * CB) * wv;
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) finish(ow + t, acc[t]);
  }
  for (; ow < hi; ++ow) {
    vf acc = bias;
    for (int64_t ki = k0; ki < k1; ++ki) {
      const float* row = in + ((oh * d.s - d.p + ki) * d.W + ow * d.s - d.p) * CB;
      for (int64_t kj = 0; kj < k; ++kj) acc += load(row + kj * CB) * load(w + (ki * k + kj) * CB);
    }
    finish(ow, acc);
  }
  for (ow = std::max(hi, lo); ow < d.OW; ++ow) checked(ow);
}

// ---- pooling -------------------------------------------------------------------------------------------------------

// One output row of a K×K max pool (stride s, padding p: padded taps are skipped, as PyTorch treats them as −∞).
inline void max_pool_row(const Depthwise& d, const float* __restrict in, float* __restrict out, int64_t oh) {
  for (int64_t ow = 0; ow < d.OW; ++ow) {
    vf m = splat(-INFINITY);
    for (int64_t ki = 0; ki < d.k; ++ki) {
      const int64_t ih = oh * d.s - d.p + ki;
      if (ih < 0 || ih >= d.H) continue;
      for (int64_t kj = 0; kj < d.k; ++kj) {
        const int64_t iw = ow * d.s - d.p + kj;
        if (iw < 0 || iw >= d.W) continue;
        const vf v = load(in + (ih * d.W + iw) * CB);
        m = v > m ? v : m;
      }
    }
    store(out + ow * CB, m);
  }
}

// Mean over the P pixels of one channel block plane [P][CB] into one vector (out).
inline void global_average(const float* __restrict in, int64_t P, float* __restrict out) {
  vf s[4] = {vf{}, vf{}, vf{}, vf{}};
  int64_t p = 0;
  for (; p + 4 <= P; p += 4)
    for (int u = 0; u < 4; ++u) s[u] += load(in + (p + u) * CB);
  for (; p < P; ++p) s[0] += load(in + p * CB);
  store(out, (s[0] + s[1] + (s[2] + s[3])) * splat(1.0f / static_cast<float>(P)));
}

// out[p] = in[p] · scale for the P pixel vectors of one block plane (squeeze-excitation).
inline void scale_plane_to(const float* __restrict in, float* __restrict out, int64_t P, vf scale) {
  for (int64_t p = 0; p < P; ++p) store(out + p * CB, load(in + p * CB) * scale);
}

#endif  // RETIKD_GEMM_VECTOR_EXTENSIONS

}  // namespace nchwc
}  // namespace cpu
}  // namespace retikd
