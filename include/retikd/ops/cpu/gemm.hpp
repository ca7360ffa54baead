// retikd/ops/cpu/gemm.hpp — the CPU matrix multiply every dense op stands on (matmul, linear, attention,
// conv2d through im2col), plus the naive reference the tests check it against.
//
// Goto/BLIS structure: C is walked in NC-wide column blocks and K in KC-deep slices. op(B) is packed once
// per column block (a few slices at a time) into NR-wide micro-panels shared by all threads; each thread
// takes a range of rows, packs MC×KC blocks of op(A) into MR-tall micro-panels (thread-local) and runs the
// MR×NR micro-kernel over them.
// Packing handles the transposes and zero-pads the edges, so the micro-kernel only ever sees full, unit-stride,
// 64-byte-aligned panels; edge tiles of C go through a small stack tile. A micro-panel of B (KC×NR) stays in
// L1 while the loop over A micro-panels streams the packed A block from L2.
//
// The micro-kernel is written with GCC/Clang vector extensions (no intrinsics headers): the vector width
// and the tile follow the ISA the compiler targets — 16-wide zmm on AVX-512 (8×32 floats), 8-wide ymm on
// AVX2 (6×16), 4-wide q registers on NEON (8×8) and SSE (4×8). The accumulators are a
// fixed-size array indexed only by fully unrolled constants, so the compiler keeps them in registers and
// contracts `acc += a * b` into FMAs. Other compilers get a scalar fallback with the same structure.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <retikd/core/parallel.hpp>
#include <retikd/ops/cpu/vec_math.hpp>

namespace retikd {
namespace cpu {

// Which products gemm lets take the wide AVX-512 register tile (gemm_detail::use_wide_tile; ISAs with one tile
// ignore it). deep_only: K >= 256, for convolutions and general matmuls, where the wide tile lost on the
// MobileNetV2 student's K = 192 products; linear_layer: K >= 192, for a linear layer's x·Wᵀ over tokens (ViT-Tiny's
// D = 192), where it wins. Only the speed differs: both tiles compute the same product up to rounding.
enum class WideTileRule { deep_only, linear_layer };

namespace gemm_detail {

// ---------------------------------------------------------------------------------------------------------
// ISA-dependent vector width and register tile: MR rows × NV vectors of C live in registers.
//  - AVX-512 (32 zmm): two tiles, chosen per call (use_wide_tile below). 8 × 2 vectors = 16 accumulators (8×32
//    floats, 8×16 doubles; per k step 2 vector loads of B, 8 broadcasts of A, 16 FMAs): on Zen 5 it matches
//    14 × 2 and 8 × 3 on 1024³ and beats them on DL shapes, because 8 rows and 32 columns waste less on edge
//    tiles, and it stays the choice for convolutions (power-of-two channel counts, spatial sizes like 196).
//    6 × 4 vectors = 24 accumulators (6×64 floats) + 4 B vectors + 1 broadcast: 4 loads of B and 6
//    broadcasts per 24 FMAs, 0.42 loads per FMA against 0.63. On the 2-core Sapphire-Rapids-class Xeon the
//    ViT-S/14 linear GEMMs of a training step (alone, outside the model) ran 9–13 % faster with it in every
//    one of 8 interleaved rounds, but it is no gain on every shape (6-row tiles waste rows on 16 or 32
//    output channels; see use_wide_tile): docs/results.md, "ViT-Tiny and ViT-S/14 on the CPU".
//  - AVX2 (16 ymm): the classic 6 × 2 (12 accumulators + 2 B vectors + 1 broadcast).
//  - AArch64 NEON (32 q registers, Cortex-A57): 8 × 2 (8×8 floats): 16 accumulators + 2 B vectors + 8 A
//    scalars. 8 × 3 (24 accumulators) needs 35 registers that way and GCC 12 spills it; 6 × 3 fits too
//    but wastes rows on power-of-two sizes, as on AVX-512.
//  - other 128-bit SIMD (SSE2 without FMA needs temporaries): 4 × 2.
// ISAs with one tile use it as both the narrow and the wide tile.
#if defined(__GNUC__) || defined(__clang__)
#define RETIKD_GEMM_VECTOR_EXTENSIONS 1
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64, kTileRows = 8, kTileVectors = 2, kWideTileRows = 6, kWideTileVectors = 4;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32, kTileRows = 6, kTileVectors = 2, kWideTileRows = 6, kWideTileVectors = 2;
#elif defined(__aarch64__)
constexpr int kVectorBytes = 16, kTileRows = 8, kTileVectors = 2, kWideTileRows = 8, kWideTileVectors = 2;
#else
constexpr int kVectorBytes = 16, kTileRows = 4, kTileVectors = 2, kWideTileRows = 4, kWideTileVectors = 2;
#endif
#else  // no vector extensions: a scalar tile with the same structure
constexpr int kVectorBytes = 0, kTileRows = 4, kTileVectors = 4, kWideTileRows = 4, kWideTileVectors = 4;
#endif
constexpr bool kHasWideTile = kWideTileRows != kTileRows || kWideTileVectors != kTileVectors;

// Tile and cache blocks per element type and tile (MRv rows × NVv vectors).
// KC: a B micro-panel (KC × NR) stays in L1 while A micro-panels stream past it. 256 for the narrow tile
//    (32 KB for AVX-512 floats); 192 for the wide AVX-512 tile (a 48 KB panel), which measured best among
//    128, 160, 192 and 256 there (ViT widths are multiples of 192, so K splits into equal slices).
// MC: the packed A block (MC × KC, 256 KB for floats) stays in L2 across the sweep over B micro-panels.
// NC: the packed B block (KC × NC, several KC slices of it at once) is streamed from L2/L3 per A block.
// Measured on 1024³ (docs/results.md): KC 192..512 and MC 128..512 are all within noise of each other.
template <class T, int MRv = kTileRows, int NVv = kTileVectors>
struct Blocking {
  static constexpr int L = kVectorBytes / static_cast<int>(sizeof(T)) > 0
                               ? kVectorBytes / static_cast<int>(sizeof(T))
                               : 1;  // lanes per vector
  static constexpr int NV = NVv;
  static constexpr int NR = NV * L;
  static constexpr int MR = MRv;
  static constexpr int64_t KC = (kHasWideTile && MRv == kWideTileRows && NVv == kWideTileVectors) ? 192 : 256;
  static constexpr int64_t MC = MR * ((262144 / static_cast<int64_t>(sizeof(T))) / KC / MR);
  static constexpr int64_t NC = 4096;
};

template <class T>
using WideBlocking = Blocking<T, kWideTileRows, kWideTileVectors>;

#if defined(RETIKD_GEMM_VECTOR_EXTENSIONS)
template <class T>
struct Vector {
  typedef T type __attribute__((vector_size(kVectorBytes)));
};
#endif

// ---------------------------------------------------------------------------------------------------------
// Thread-local, 64-byte-aligned scratch that grows and is reused across calls (slot 0: packed A, 1: packed B).
template <class T>
T* scratch(int slot, std::size_t count) {
  struct Buffer {
    void* data = nullptr;
    std::size_t bytes = 0;
    ~Buffer() {
      if (data) ::operator delete(data, std::align_val_t(64));
    }
  };
  static thread_local Buffer buffers[2];
  Buffer& b = buffers[slot];
  const std::size_t need = (count * sizeof(T) + 63) / 64 * 64;
  if (need > b.bytes) {
    if (b.data) ::operator delete(b.data, std::align_val_t(64));
    b.data = nullptr;
    b.bytes = 0;
    b.data = ::operator new(need, std::align_val_t(64));
    b.bytes = need;
  }
  return static_cast<T*>(b.data);
}

// ---------------------------------------------------------------------------------------------------------
// Packing. op(A) is M×K with op(A)(i,k) = trans_a ? A[k*lda + i] : A[i*lda + k]; a packed A micro-panel is
// dst[k*MR + i]. op(B) is K×N; a packed B micro-panel is dst[k*NR + j]. Rows (columns) past the edge are
// zero: they only feed tile elements that are never stored, but stale scratch could hold NaNs or denormals
// that slow the FMAs down on some cores.

// MR row streams (row i at src[i], consecutive in k) into the k-major panel dst[k*MR + i] for k in [0, kc),
// 16 values of k at a time; returns how many k it packed (the caller finishes the rest). With GCC on AVX-512
// each 16-float output vector is built from the MR loaded row vectors by a chain of MR − 1 two-source lane
// permutes (vpermt2ps) whose index vectors are computed once, instead of one scalar load and insert per value:
// the scalar loop was ~5 % of a ViT linear GEMM in a perf profile (session 13). Elsewhere it packs nothing.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
template <int MR>
struct RowPackPermutes {
  typedef int32_t VI __attribute__((vector_size(64)));
  // mask[j][s] (s >= 1): the permute that brings row s into output vector j, whose lane l holds row f % MR
  // at k = f / MR, f = 16j + l.
  VI mask[MR][MR];
  RowPackPermutes() {
    for (int j = 0; j < MR; ++j)
      for (int s = 1; s < MR; ++s)
        for (int l = 0; l < 16; ++l) {
          const int f = 16 * j + l, row = f % MR, k = f / MR;
          if (s == 1)  // the first permute takes rows 0 and 1 (indices 16.. name the second operand)
            mask[j][s][l] = row == 0 ? k : row == 1 ? 16 + k : 0;
          else  // later ones keep the lanes gathered so far and bring row s's
            mask[j][s][l] = row == s ? 16 + k : l;
        }
  }
};

template <int MR>
int64_t pack_rows_simd(const float* const* src, int64_t kc, float* __restrict dst) {
  typedef float VF __attribute__((vector_size(64)));
  static const RowPackPermutes<MR> permutes;
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
    VF v[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) std::memcpy(&v[i], src[i] + k, sizeof(VF));
#pragma GCC unroll 16
    for (int j = 0; j < MR; ++j) {
      VF out = __builtin_shuffle(v[0], v[1], permutes.mask[j][1]);
#pragma GCC unroll 16
      for (int s = 2; s < MR; ++s) out = __builtin_shuffle(out, v[s], permutes.mask[j][s]);
      std::memcpy(dst + k * MR + 16 * j, &out, sizeof(VF));
    }
  }
  return k;
}
#endif

template <int MR, class T>
int64_t pack_rows_simd(const T* const*, int64_t, T*) {
  return 0;
}

// The transposed-B counterpart: NR column streams (column j of op(B) at src[j], consecutive in k; a linear
// layer's weight rows) into the k-major panel dst[k*NR + j], 16 × 16 blocks at a time by an in-register
// transpose: four butterfly stages of 16 two-source permutes each (stage h swaps the off-diagonal h × h blocks
// of every 2h × 2h block), 64 permutes per 256 values instead of a scalar load and insert per value (in a
// perf profile of ViT-Tiny's eval forward the weight packing went from 2.5 % to 2.2 %: the rest is reading the
// weights from memory). Returns how many k it packed. GCC on AVX-512 with NR a multiple of 16 only; elsewhere
// it packs nothing.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
struct TransposePermutes {
  typedef int32_t VI __attribute__((vector_size(64)));
  VI low[4], high[4];  // stage s (h = 8 >> s): the new rows i and i + h of a pair, (i & h) == 0
  TransposePermutes() {
    for (int s = 0; s < 4; ++s) {
      const int h = 8 >> s;
      for (int l = 0; l < 16; ++l) {
        low[s][l] = (l & h) == 0 ? l : 16 + l - h;
        high[s][l] = (l & h) == 0 ? l + h : 16 + l;
      }
    }
  }
};

template <int NR>
int64_t pack_columns_simd(const float* const* src, int64_t kc, float* __restrict dst) {
  if (NR % 16 != 0) return 0;
  typedef float VF __attribute__((vector_size(64)));
  static const TransposePermutes permutes;
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
#pragma GCC unroll 4
    for (int g = 0; g < NR / 16; ++g) {
      VF v[16];
#pragma GCC unroll 16
      for (int r = 0; r < 16; ++r) std::memcpy(&v[r], src[16 * g + r] + k, sizeof(VF));
#pragma GCC unroll 4
      for (int stage = 0; stage < 4; ++stage) {
        const int h = 8 >> stage;
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
          if ((i & h) != 0) continue;
          const VF a = v[i], b = v[i + h];
          v[i] = __builtin_shuffle(a, b, permutes.low[stage]);
          v[i + h] = __builtin_shuffle(a, b, permutes.high[stage]);
        }
      }
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) std::memcpy(dst + (k + t) * NR + 16 * g, &v[t], sizeof(VF));
    }
  }
  return k;
}
#endif

template <int NR, class T>
int64_t pack_columns_simd(const T* const*, int64_t, T*) {
  return 0;
}

template <class T, class Cfg = Blocking<T>>
void pack_a_panel(bool trans_a, const T* A, int64_t lda, int64_t i0, int64_t rows, int64_t k0, int64_t kc,
                  T* __restrict dst) {
  constexpr int MR = Cfg::MR;
  if (trans_a && rows == MR) {  // the MR values of one k are contiguous in memory: one fixed-size copy per k
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = A + (k0 + k) * lda + i0;
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) dst[k * MR + i] = src[i];
    }
  } else if (trans_a) {
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = A + (k0 + k) * lda + i0;
      T* d = dst + k * MR;
      int64_t i = 0;
      for (; i < rows; ++i) d[i] = src[i];
      for (; i < MR; ++i) d[i] = T(0);
    }
  } else if (rows == MR) {  // MR row streams read in lockstep: each source row is read sequentially
    const T* src[MR];
    for (int i = 0; i < MR; ++i) src[i] = A + (i0 + i) * lda + k0;
    for (int64_t k = pack_rows_simd<MR>(src, kc, dst); k < kc; ++k) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) dst[k * MR + i] = src[i][k];
    }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      T* d = dst + k * MR;
      int64_t i = 0;
      for (; i < rows; ++i) d[i] = A[(i0 + i) * lda + k0 + k];
      for (; i < MR; ++i) d[i] = T(0);
    }
  }
}

template <class T, class Cfg = Blocking<T>>
void pack_b_panel(bool trans_b, const T* B, int64_t ldb, int64_t j0, int64_t cols, int64_t k0, int64_t kc,
                  T* __restrict dst) {
  constexpr int NR = Cfg::NR;
  if (!trans_b) {  // one row of op(B) is contiguous: a copy per k
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = B + (k0 + k) * ldb + j0;
      T* d = dst + k * NR;
      if (cols == NR) {
#pragma GCC unroll 64
        for (int j = 0; j < NR; ++j) d[j] = src[j];
      } else {
        int64_t j = 0;
        for (; j < cols; ++j) d[j] = src[j];
        for (; j < NR; ++j) d[j] = T(0);
      }
    }
  } else if (cols == NR) {  // op(B)(k, j) = B[j*ldb + k]: NR row streams read in lockstep, NR-wide writes
    // (30% faster than walking one stored row at a time and scattering it with stride NR).
    const T* src[NR];
    for (int j = 0; j < NR; ++j) src[j] = B + (j0 + j) * ldb + k0;
    for (int64_t k = pack_columns_simd<NR>(src, kc, dst); k < kc; ++k) {
#pragma GCC unroll 64
      for (int j = 0; j < NR; ++j) dst[k * NR + j] = src[j][k];
    }
  } else {
    int64_t j = 0;
    for (; j < cols; ++j) {
      const T* src = B + (j0 + j) * ldb + k0;
      for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
    }
    for (; j < NR; ++j)
      for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = T(0);
  }
}

// ---------------------------------------------------------------------------------------------------------
// An optional exact GELU on each finished tile of C, applied after the last K slice while the tile is still in
// L1 (a transformer MLP's fc1 + GELU without a second pass over a B·tokens × 4·D matrix). `out` null: C is
// overwritten with gelu(C); else gelu(C) goes to out (row stride ld_out) and C keeps the pre-activation
// that the backward pass needs.
template <class T>
struct GeluStore {
  T* out = nullptr;
  int64_t ld_out = 0;
};

// y = x·Φ(x) = ½x(1 + erf(x/√2)) over n values (y may be x); float uses the SIMD erf of cpu/vec_math.hpp,
// as cpu::gelu_erf does.
template <class T>
inline void gelu_values(const T* x, T* y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = T(0.5) * x[j] * (T(1) + std::erf(x[j] * T(0.70710678118654752440)));
}
template <>
inline void gelu_values<float>(const float* x, float* y, int64_t n) {
  vec::gelu_erf(x, y, n);
}

// ---------------------------------------------------------------------------------------------------------
// The micro-kernel: C[0:MR, 0:NR] = alpha * Apanel · Bpanel + beta * C (+ bias[0:NR] on every row when
// bias is non-null; beta == 0: C is not read).
template <class T, class Cfg = Blocking<T>>
inline void micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c,
                         int64_t ldc, T alpha, T beta, const T* __restrict bias = nullptr) {
  constexpr int MR = Cfg::MR;
  constexpr int NV = Cfg::NV;
  constexpr int L = Cfg::L;
#if defined(RETIKD_GEMM_VECTOR_EXTENSIONS)
  typedef typename Vector<T>::type V;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  // Warm the C tile while the first products are computed; it is written once, at the end.
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    __builtin_prefetch(c + i * ldc, 1, 3);
    __builtin_prefetch(c + i * ldc + NV * L - 1, 1, 3);
  }

#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], b + v * L, sizeof(V));
    // A is read as scalars: GCC turns them into `vbroadcastss` folded into the FMA on AVX-512 and into
    // `ldp s, s` + by-lane `fmla v.4s, v.4s, v.s[0]` on AArch64. (Loading A as vectors and indexing lanes
    // made GCC 12 move every lane through general registers on AArch64 — tried and dropped.)
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
    }
    a += MR;
    b += NV * L;
  }

  if (bias != nullptr) {  // the linear layer's bias, added in the store instead of a second pass over C
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) std::memcpy(&bv[v], bias + v * L, sizeof(V));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        V out = alpha * acc[i][v] + bv[v];
        if (beta != T(0)) {
          V old;
          std::memcpy(&old, c + i * ldc + v * L, sizeof(V));
          out += beta * old;
        }
        std::memcpy(c + i * ldc + v * L, &out, sizeof(V));
      }
  } else if (beta == T(0)) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        V out = alpha * acc[i][v];
        std::memcpy(c + i * ldc + v * L, &out, sizeof(V));
      }
  } else {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        V old;
        std::memcpy(&old, c + i * ldc + v * L, sizeof(V));
        V out = alpha * acc[i][v] + beta * old;
        std::memcpy(c + i * ldc + v * L, &out, sizeof(V));
      }
  }
#else
  constexpr int NR = NV * L;
  T acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
    a += MR;
    b += NR;
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      T out = alpha * acc[i][j] + (bias ? bias[j] : T(0));
      c[i * ldc + j] = beta == T(0) ? out : out + beta * c[i * ldc + j];
    }
#endif
}

// ---------------------------------------------------------------------------------------------------------
// One packed A block (mc rows in MR panels) times one packed B block (nc columns in NR panels) into C, plus
// bias[j] on column j when bias is non-null; then GELU on every finished tile when gelu is non-null (its `out`
// points at this block's first element).
template <class T, class Cfg = Blocking<T>>
void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const T* ap, const T* bp, T* C, int64_t ldc, T alpha,
                  T beta, const T* bias = nullptr, const GeluStore<T>* gelu = nullptr) {
  constexpr int MR = Cfg::MR;
  constexpr int NR = Cfg::NR;
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int64_t nr = std::min<int64_t>(NR, nc - jr);
    const T* b_panel = bp + jr * kc;  // panel jr/NR starts at (jr/NR) * kc * NR
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t mr = std::min<int64_t>(MR, mc - ir);
      const T* a_panel = ap + ir * kc;
      T* c = C + ir * ldc + jr;
      if (mr == MR && nr == NR) {
        micro_kernel<T, Cfg>(kc, a_panel, b_panel, c, ldc, alpha, beta, bias ? bias + jr : nullptr);
      } else {  // edge tile: full tile into a stack buffer, then only the valid part into C
        alignas(64) T tile[MR * NR];
        micro_kernel<T, Cfg>(kc, a_panel, b_panel, tile, NR, T(1), T(0));
        for (int64_t i = 0; i < mr; ++i) {
          T* crow = c + i * ldc;
          const T* trow = tile + i * NR;
          for (int64_t j = 0; j < nr; ++j) {
            T out = alpha * trow[j] + (bias ? bias[jr + j] : T(0));
            crow[j] = beta == T(0) ? out : out + beta * crow[j];
          }
        }
      }
      if (gelu != nullptr) {
        for (int64_t i = 0; i < mr; ++i)
          gelu_values<T>(c + i * ldc, gelu->out ? gelu->out + (ir + i) * gelu->ld_out + jr : c + i * ldc, nr);
      }
    }
  }
}

// C = beta * C, where beta == 0 writes zeros (NaN-safe).
template <class T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  if (beta == T(1)) return;
  for (int64_t i = 0; i < M; ++i) {
    T* row = C + i * ldc;
    if (beta == T(0)) {
      std::fill(row, row + N, T(0));
    } else {
      for (int64_t j = 0; j < N; ++j) row[j] *= beta;
    }
  }
}

// Problems below this many multiply-adds run on the calling thread: waking the pool costs more than it saves.
constexpr double kThreadingMinMacs = 96.0 * 96.0 * 96.0;

// Upper bound of the packed B group (see gemm_blocked): 8 MiB, well inside this machine's L3 and small
// enough for a Jetson's 4 GiB.
constexpr int64_t kPackedBBytes = int64_t(8) << 20;

// The blocked GEMM with validated arguments, M, N, K > 0 and alpha != 0. `threads` > 1 lets it use the pool.
// bias (N values, or null) is added to every row of C once, with the first K slice; gelu (or null) runs on
// every tile with the last one.
template <class T, class Cfg = Blocking<T>>
void gemm_blocked(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                  int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, int threads,
                  const T* bias = nullptr, const GeluStore<T>* gelu = nullptr) {
  constexpr int64_t MR = Cfg::MR, NR = Cfg::NR, KC = Cfg::KC, MC = Cfg::MC, NC = Cfg::NC;
  const int64_t m_panels = (M + MR - 1) / MR;
  const int64_t n_panels = (N + NR - 1) / NR;

  if (threads > 1 && m_panels < 2 * threads && n_panels >= 2 * threads) {
    // Short and wide (e.g. a linear layer on a small batch): split the columns; each slice is an
    // independent single-threaded GEMM that packs its own (small) A.
    parallel_for(0, n_panels, (n_panels + threads - 1) / threads, [&](int64_t lo, int64_t hi) {
      const int64_t j0 = lo * NR, j1 = std::min(N, hi * NR);
      const T* b_slice = trans_b ? B + j0 * ldb : B + j0;
      GeluStore<T> slice_gelu;
      if (gelu) slice_gelu = {gelu->out ? gelu->out + j0 : nullptr, gelu->ld_out};
      gemm_blocked<T, Cfg>(trans_a, trans_b, M, j1 - j0, K, alpha, A, lda, b_slice, ldb, beta, C + j0, ldc, 1,
                           bias ? bias + j0 : nullptr, gelu ? &slice_gelu : nullptr);
    });
    return;
  }

  // B is packed for a whole group of KC slices at once (up to kPackedBBytes), so a threaded GEMM wakes the
  // pool twice per group — pack B, then compute — rather than twice per KC slice: on this VM each wake-up
  // of a sleeping worker costs tens of microseconds (2 wake-ups instead of 8 for a 1024³ GEMM).
  // Inside the compute region each thread walks its rows MC at a time and, for each, the KC slices in order,
  // so its C block is accumulated slice after slice while it is still in cache.
  const int64_t nc_max = std::min(N, NC);
  const int64_t ncr_max = (nc_max + NR - 1) / NR * NR;
  const int64_t slices_per_group =
      std::max<int64_t>(1, kPackedBBytes / static_cast<int64_t>(sizeof(T)) / (KC * ncr_max));
  const int64_t kg_max = std::min(K, KC * slices_per_group);
  const int64_t kc_max = std::min(K, KC);
  // Packed B is written by the pool and read by every thread, so it belongs to the calling thread.
  T* bp = scratch<T>(1, static_cast<std::size_t>(kg_max * ncr_max));

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t nc_panels = (nc + NR - 1) / NR;
    const int64_t ncr = nc_panels * NR;
    for (int64_t pg = 0; pg < K; pg += kg_max) {
      const int64_t kg = std::min(kg_max, K - pg);
      const int64_t slices = (kg + KC - 1) / KC;  // slice s covers k in [pg + s*KC, +kc), packed at s*KC*ncr

      auto pack_b = [&](int64_t lo, int64_t hi) {  // over (slice, panel) pairs
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t s = t / nc_panels, p = t % nc_panels;
          const int64_t pc = pg + s * KC, kc = std::min(KC, K - pc);
          pack_b_panel<T, Cfg>(trans_b, B, ldb, jc + p * NR, std::min(NR, nc - p * NR), pc, kc,
                          bp + s * KC * ncr + p * NR * kc);
        }
      };
      // Rows of C in whole MR panels [lo, hi): packed MC rows × one slice at a time into this thread's buffer.
      auto compute = [&](int64_t lo, int64_t hi) {
        T* ap = scratch<T>(0, static_cast<std::size_t>(MC * kc_max));
        for (int64_t p0 = lo; p0 < hi; p0 += MC / MR) {
          const int64_t p1 = std::min(hi, p0 + MC / MR);
          const int64_t i0 = p0 * MR, i1 = std::min(M, p1 * MR);
          for (int64_t s = 0; s < slices; ++s) {
            const int64_t pc = pg + s * KC, kc = std::min(KC, K - pc);
            for (int64_t p = p0; p < p1; ++p)
              pack_a_panel<T, Cfg>(trans_a, A, lda, p * MR, std::min(MR, M - p * MR), pc, kc,
                              ap + (p - p0) * MR * kc);
            const T beta_now = pc == 0 ? beta : T(1);  // later K slices accumulate onto the first
            const T* bias_now = pc == 0 && bias ? bias + jc : nullptr;
            GeluStore<T> block_gelu;
            if (gelu) block_gelu = {gelu->out ? gelu->out + i0 * gelu->ld_out + jc : nullptr, gelu->ld_out};
            const GeluStore<T>* gelu_now = gelu && pc + kc == K ? &block_gelu : nullptr;
            macro_kernel<T, Cfg>(i1 - i0, nc, kc, ap, bp + s * KC * ncr, C + i0 * ldc + jc, ldc, alpha, beta_now,
                                 bias_now, gelu_now);
          }
        }
      };
      if (threads > 1) {
        const int64_t b_tasks = slices * nc_panels;
        parallel_for(0, b_tasks, (b_tasks + threads - 1) / threads, pack_b);
        // Up to four row chunks per thread, taken dynamically: a thread that was preempted (a shared machine)
        // or started late leaves the rest to the others instead of holding the region up. Packing A costs the
        // same either way (each chunk packs only its own rows).
        parallel_for(0, m_panels, 4, compute);
      } else {
        pack_b(0, slices * nc_panels);
        compute(0, m_panels);
      }
    }
  }
}

// The wide tile is taken for deep products (K >= 256 by default: its gain is in the FMA loop, not in the
// stores) when its padded work (rows and columns rounded up to whole tiles), discounted by the ~10 % it
// measured faster on the ViT-S/14 linears, is below the narrow tile's: M = B·tokens and widths that are
// multiples of 64 take it; 16 or 32 output channels (6-row tiles waste 12.5 %) keep the narrow one. In per-op
// profiles of whole training steps (Xeon, 2 threads) the wide tile took 4 % off ViT-S/14's step, left
// ViT-Tiny's unchanged and made MobileNetV2's convolution backward 5–10 % slower when every product could take
// it; the K bound keeps most of MobileNetV2's convolutions (K = input channels) on the narrow tile. A linear
// layer's product (WideTileRule::linear_layer: K = D = 192 in ViT-Tiny) takes it from K >= 192: ViT-Tiny's qkv
// and fc1 alone ran 13–25 % faster on it (retikd_bench_gemm sgemm_linear, Xeon, 2 threads), while letting every
// product with K >= 192 take it added 2–4 % to MobileNetV2's eval forward (the student): one rule per caller.
template <class T>
bool use_wide_tile(int64_t M, int64_t N, int64_t K, WideTileRule rule = WideTileRule::deep_only) {
  const int64_t min_k = rule == WideTileRule::linear_layer ? 192 : 256;
  if (!kHasWideTile || K < min_k) return false;
  using Narrow = Blocking<T>;
  using Wide = WideBlocking<T>;
  auto padded = [](int64_t x, int64_t r) { return static_cast<double>((x + r - 1) / r * r); };
  const double narrow = padded(M, Narrow::MR) * padded(N, Narrow::NR);
  const double wide = padded(M, Wide::MR) * padded(N, Wide::NR);
  return wide < 1.1 * narrow;
}

// Everything after argument checking: the degenerate cases, then the blocked GEMM.
template <class T>
void gemm_unchecked(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                    int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, bool allow_threads,
                    const T* bias = nullptr, const GeluStore<T>* gelu = nullptr,
                    WideTileRule rule = WideTileRule::deep_only) {
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == T(0)) {  // BLAS semantics: A and B are not read
    scale_c(M, N, beta, C, ldc);
    if (bias)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) C[i * ldc + j] += bias[j];
    if (gelu)
      for (int64_t i = 0; i < M; ++i)
        gelu_values<T>(C + i * ldc, gelu->out ? gelu->out + i * gelu->ld_out : C + i * ldc, N);
    return;
  }
  int threads = 1;
  if (allow_threads && static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) >= kThreadingMinMacs)
    threads = thread_pool().num_threads();
  if (use_wide_tile<T>(M, N, K, rule))
    gemm_blocked<T, WideBlocking<T>>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads, bias,
                                     gelu);
  else
    gemm_blocked<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, threads, bias, gelu);
}

inline void check_gemm_args(const char* op, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                            const void* A, int64_t lda, const void* B, int64_t ldb, const void* C, int64_t ldc,
                            bool check_pointers = true) {
  auto where = [&] {
    return std::string(op) + "(trans_a=" + (trans_a ? "true" : "false") + ", trans_b=" +
           (trans_b ? "true" : "false") + ", M=" + std::to_string(M) + ", N=" + std::to_string(N) +
           ", K=" + std::to_string(K) + ", lda=" + std::to_string(lda) + ", ldb=" + std::to_string(ldb) +
           ", ldc=" + std::to_string(ldc) + "): ";
  };
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument(where() + "sizes must be non-negative");
  // Row strides of the stored matrices: A is M×K (K×M when transposed), B is K×N (N×K), C is M×N.
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  if (lda < std::max<int64_t>(1, a_cols))
    throw std::invalid_argument(where() + "lda must be >= max(1, " + std::to_string(a_cols) + ")");
  if (ldb < std::max<int64_t>(1, b_cols))
    throw std::invalid_argument(where() + "ldb must be >= max(1, " + std::to_string(b_cols) + ")");
  if (ldc < std::max<int64_t>(1, N))
    throw std::invalid_argument(where() + "ldc must be >= max(1, " + std::to_string(N) + ")");
  if (!check_pointers) return;
  if ((M > 0 && K > 0 && A == nullptr) || (K > 0 && N > 0 && B == nullptr) || (M > 0 && N > 0 && C == nullptr))
    throw std::invalid_argument(where() + "null matrix pointer");
}

}  // namespace gemm_detail

// Row-major C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C, op(X) = X or Xᵀ. lda/ldb/ldc are the row
// strides of the stored (untransposed) matrices. beta == 0 ignores C's old content (NaN-safe); K == 0 or
// alpha == 0 gives C = beta * C without reading A or B. Threads from the shared pool on large problems.
// bias (optional, N values) is added to every row of C: a linear layer's x·Wᵀ + b in one pass over C.
// rule: which register tile the product may take (WideTileRule; the same product up to rounding either way).
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc, const T* bias = nullptr,
          WideTileRule rule = WideTileRule::deep_only) {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value, "gemm: float or double");
  gemm_detail::check_gemm_args("gemm", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  gemm_detail::gemm_unchecked<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, true, bias,
                                 nullptr, rule);
}

// C = gelu(op(A) · op(B) + bias) with the GELU (exact, erf) applied to each tile as it is finished; with
// gelu_out non-null, C keeps the pre-activation op(A)·op(B) + bias and gelu_out (M × N, row stride ld_gelu)
// receives its GELU. The values are gemm's followed by cpu::gelu_erf's formula, up to rounding (the store and
// the GELU may be contracted into FMAs differently from a separate gemm and gelu pass).
template <class T>
void gemm_bias_gelu(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
                    const T* B, int64_t ldb, T* C, int64_t ldc, const T* bias, T* gelu_out = nullptr,
                    int64_t ld_gelu = 0, WideTileRule rule = WideTileRule::deep_only) {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value, "gemm_bias_gelu: float or double");
  gemm_detail::check_gemm_args("gemm_bias_gelu", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  if (gelu_out != nullptr && ld_gelu < std::max<int64_t>(1, N))
    throw std::invalid_argument("gemm_bias_gelu: ld_gelu must be >= max(1, N = " + std::to_string(N) + ")");
  const gemm_detail::GeluStore<T> gelu{gelu_out, ld_gelu};
  gemm_detail::gemm_unchecked<T>(trans_a, trans_b, M, N, K, T(1), A, lda, B, ldb, T(0), C, ldc, true, bias, &gelu,
                                 rule);
}

// The same product on the calling thread only, for callers that already run independent GEMMs in parallel
// (one attention head per task): the pool is never woken from inside them.
template <class T>
void gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                 const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value, "gemm_serial: float or double");
  gemm_detail::check_gemm_args("gemm_serial", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  gemm_detail::gemm_unchecked<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, false);
}

// `batch` independent GEMMs; matrix b uses A + b*stride_a, B + b*stride_b, C + b*stride_c (element strides;
// stride_a or stride_b 0 broadcasts that operand). The C matrices must not overlap. Many small GEMMs are
// spread over the pool one matrix per task; few large ones are threaded inside each GEMM instead.
template <class T>
void gemm_batched(int64_t batch, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                  const T* A, int64_t lda, int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta,
                  T* C, int64_t ldc, int64_t stride_c) {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value,
                "gemm_batched: float or double");
  gemm_detail::check_gemm_args("gemm_batched", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, batch > 0);
  auto where = [&] {
    return "gemm_batched(batch=" + std::to_string(batch) + ", M=" + std::to_string(M) + ", N=" +
           std::to_string(N) + ", K=" + std::to_string(K) + ", stride_a=" + std::to_string(stride_a) +
           ", stride_b=" + std::to_string(stride_b) + ", stride_c=" + std::to_string(stride_c) + "): ";
  };
  if (batch < 0) throw std::invalid_argument(where() + "batch must be non-negative");
  if (stride_a < 0 || stride_b < 0 || stride_c < 0)
    throw std::invalid_argument(where() + "strides must be non-negative");
  if (batch == 0 || M == 0 || N == 0) return;
  if (batch > 1 && stride_c < (M - 1) * ldc + N)  // overlapping outputs would race
    throw std::invalid_argument(where() + "stride_c must be >= (M-1)*ldc + N = " +
                                std::to_string((M - 1) * ldc + N) + " so the C matrices do not overlap");

  auto one = [&](int64_t b, bool allow_threads) {
    gemm_detail::gemm_unchecked<T>(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b,
                                   ldb, beta, C + b * stride_c, ldc, allow_threads);
  };
  const int threads = thread_pool().num_threads();
  const double macs = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  // Inside one GEMM the threads share packed B and split rows; that only pays off for large matrices, so
  // smaller ones (attention heads, grouped convolutions) go one matrix per task.
  if (threads > 1 && batch > 1 && macs * static_cast<double>(batch) >= gemm_detail::kThreadingMinMacs &&
      (batch >= 2 * threads || macs < 256.0 * 256.0 * 256.0)) {
    parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) one(b, false);
    });
  } else {
    for (int64_t b = 0; b < batch; ++b) one(b, true);
  }
}

// The readable reference the tests compare against: a naive triple loop accumulating in double.
template <class T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                    int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  gemm_detail::check_gemm_args("gemm_reference", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double sum = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const T a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        sum += static_cast<double>(a) * static_cast<double>(b);
      }
      double out = static_cast<double>(alpha) * sum;
      if (beta != T(0)) out += static_cast<double>(beta) * static_cast<double>(C[i * ldc + j]);
      C[i * ldc + j] = static_cast<T>(out);
    }
  }
}

}  // namespace cpu
}  // namespace retikd
