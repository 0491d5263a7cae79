// Quantized matrix x vector products for a few rows of x (the decode step): y = x W^T + b, with W
// held as in haven/linear/quantize.py, read as saved (no repacking):
//   int8: codes (out, in), one float16 scale per group of `group` inputs, a float16 zero per
//         group (asymmetric) or none (symmetric);
//   int4: codes (out, in/2), two per byte, the even input in the low nibble; a float16 zero per
//         group (asymmetric) or the fixed zero 8 (symmetric).
// A weight stands for (q - zero) * scale.
//
// Numerics (both paths below): x is quantized too, per row and per block of 4 inputs (int8
// weights) or 8 (int4), to int8 by round-to-nearest(-even): d = max|x_j| / 127, xq = round(x / d)
// (0 when d is 0), llama.cpp's q8_0 rule on smaller blocks (one per int32 lane below, so the
// finer scales cost nothing; blocks of the weight's group of 32 lose int8 greedy-token
// agreement on the tiny test decoders). Then, with S_j = the sum of xq over block j,
//   y = b + sum_g scale_g * sum_{j in g} d_j * (sum_{k in j} q_k xq_k - zero_g S_j),
// the integer parts exact (int32), the rest float32 (scales and zeros widened from float16). A
// symmetric zero (0 or 8) is an integer and is taken out in the integer sums; a fitted (float)
// zero is taken out at the end of the row as
// sum_g scale_g zero_g (sum_{j in g} d_j S_j). So the result is the product of the dequantized
// weight with the int8-rounded x, up to float32 rounding; the rounding of x moves each input by
// at most d_j / 2. (Prefill, more than a few rows, takes QuantizedLinear's float path instead.)
//
// The AVX-512 VNNI path (built with -march=native on a CPU that has it) reads each weight once
// per call, a block of output rows at a time for a chunk of up to 4 rows of x, and multiplies
// bytes with vpdpbusd (64 unsigned x signed int8 products into 16 int32 lanes per instruction):
// - int8: 64 codes per load; vpdpbusd wants the unsigned operand first, so the codes are made
//   q + 128 (one xor) and 128 S_j is taken out of the integer sum;
// - int4: 64 bytes (128 codes) per load, split into the low nibbles (the even inputs) and the high
//   nibbles (the odd inputs), each an unsigned byte 0..15, multiplied with x laid out the same
//   way (per block of 128 inputs: its 64 even inputs, then its 64 odd ones).
// Each int32 lane then holds one of x's blocks (4 or 8 consecutive inputs, in one group); it is
// converted to float once per load and multiplied by scale_g * d_j (the weight's scales spread
// over the lanes of their group by one permute per load, x's d laid out per lane once per call).
// The integer zero term is the lanes' starting value, so it costs nothing.
// Output blocks are shared out over torch's intra-op threads. The portable loop below, on the
// same quantized x, is the fallback for other CPUs and other group sizes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define HAVEN_VNNI 1
#endif

namespace {

struct Problem {
  int64_t rows, in, out, group, groups;
  int64_t xgroup, xgroups;  // x's blocks of one d each (see the top): their size, how many per row
  int64_t xlanes;           // row stride of xscale and xsum (xgroups, or padded to whole VNNI blocks)
  int bits;
  const uint8_t* q;  // (out, row_bytes)
  int64_t row_bytes;
  const at::Half* scales;  // (out, groups)
  const at::Half* zeros;   // (out, groups), or nullptr: the fixed zero
  const float* bias;    // (out) or nullptr
  float* y;             // (rows, ystride): this matrix's columns of the output
  int64_t ystride;
  // x, quantized (see the top), made once per call
  const int8_t* xq;      // (rows, xstride): in input order, or in the int4 VNNI block layout
  int64_t xstride;
  const float* xscale;   // (rows, xlanes): d
  const int32_t* xsum;   // (rows, xlanes): S
  const float* xterm;    // (rows, groups): sum of d * S over each of the weight's groups, for a float zero
  // the VNNI path's per-lane tables, (rows, blocks, 16) each
  const float* lane_scale;  // d of the lane's group
  const int32_t* lane_init; // -(integer zero) * S in the lane where a group starts, else 0
};

// The integer zero taken out inside the integer sum of a path: the symmetric int4 zero 8, plus
// 128 where the VNNI path adds it to int8 codes.
int64_t integer_zero(int bits, bool symmetric, bool vnni) {
  return (bits == 4 && symmetric ? 8 : 0) + (bits == 8 && vnni ? 128 : 0);
}

#if defined(HAVEN_VNNI)
// Up to 16 float16 values (those under `m`, the rest 0) widened to float32.
inline __m512 load_halves(__mmask16 m, const at::Half* from) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, from));
}
#endif

// sum_g scale_g * zero_g * d_g S_g of output row o and x row r (a float zero), else 0.
inline float float_zero_term(const Problem& p, int64_t o, int64_t r) {
  if (!p.zeros) return 0.f;
  const at::Half* s = p.scales + o * p.groups;
  const at::Half* z = p.zeros + o * p.groups;
  const float* t = p.xterm + r * p.groups;
#if defined(HAVEN_VNNI)
  __m512 sum = _mm512_setzero_ps();
  for (int64_t g = 0; g < p.groups; g += 16) {
    const __mmask16 m = p.groups - g >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (p.groups - g)) - 1);
    sum = _mm512_fmadd_ps(_mm512_mul_ps(load_halves(m, s + g), load_halves(m, z + g)), _mm512_maskz_loadu_ps(m, t + g),
                          sum);
  }
  return _mm512_reduce_add_ps(sum);
#else
  float sum = 0.f;
  for (int64_t g = 0; g < p.groups; ++g) sum += static_cast<float>(s[g]) * static_cast<float>(z[g]) * t[g];
  return sum;
#endif
}

// ---- portable: any CPU, any group ------------------------------------------------------------

// Codes and x are widened to int16 first: GCC 12 at -O3 -march=native turns an int8 x int8
// dot-product loop into vpdpbusd with the signed codes read as unsigned (wrong sums).
void portable(const Problem& p, int64_t o_begin, int64_t o_end) {
  const int32_t zero = static_cast<int32_t>(integer_zero(p.bits, p.zeros == nullptr, false));
  std::vector<int16_t> x(p.xq, p.xq + p.rows * p.xstride), w(p.in);
  for (int64_t o = o_begin; o < o_end; ++o) {
    const uint8_t* row = p.q + o * p.row_bytes;
    for (int64_t k = 0; k < p.in; ++k)
      w[k] = p.bits == 8 ? static_cast<int8_t>(row[k]) : static_cast<int16_t>((row[k / 2] >> (4 * (k & 1))) & 0xF);
    for (int64_t r = 0; r < p.rows; ++r) {
      const int16_t* xr = x.data() + r * p.xstride;
      float y = 0.f;
      for (int64_t g = 0; g < p.groups; ++g) {
        float part = 0.f;
        for (int64_t j = g * p.group / p.xgroup; j < (g + 1) * p.group / p.xgroup; ++j) {
          int32_t dot = -zero * p.xsum[r * p.xlanes + j];
          for (int64_t k = j * p.xgroup; k < (j + 1) * p.xgroup; ++k) dot += w[k] * xr[k];
          part += p.xscale[r * p.xlanes + j] * static_cast<float>(dot);
        }
        y += static_cast<float>(p.scales[o * p.groups + g]) * part;
      }
      p.y[r * p.ystride + o] = y - float_zero_term(p, o, r) + (p.bias ? p.bias[o] : 0.f);
    }
  }
}

// ---- AVX-512 VNNI ----------------------------------------------------------------------------

#if defined(HAVEN_VNNI)

// Inputs per 64-byte load of codes, and per int32 lane.
template <int BITS>
constexpr int64_t kBlock = BITS == 8 ? 64 : 128;
template <int BITS>
constexpr int kSpan = BITS == 8 ? 4 : 8;

inline int log2_of(int64_t v) { return __builtin_ctzll(static_cast<unsigned long long>(v)); }

// Output rows o0..o0+OB-1 for x rows r0..r0+RB-1.
template <int BITS, int OB, int RB>
void block(const Problem& p, int64_t o0, int64_t r0) {
  constexpr int64_t B = kBlock<BITS>;
  const int lg = log2_of(p.group);
  const int64_t blocks = (p.in + B - 1) / B, full = p.in / B;
  // lane L of a block covers inputs span*L.. : its group is the block's first group + (span L) >> lg
  const __m512i spread = _mm512_srl_epi32(
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm_cvtsi32_si128(lg - log2_of(kSpan<BITS>)));
  const int64_t per_block = std::max<int64_t>(1, B >> lg);  // groups a whole block touches
  const int64_t group_step = B >> lg;                       // groups per block, 0 when a group spans blocks
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const uint8_t* w[OB];
  const at::Half* s[OB];
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o) {
    w[o] = p.q + (o0 + o) * p.row_bytes;
    s[o] = p.scales + (o0 + o) * p.groups;
  }
  const int8_t* x[RB];
  const int32_t* init[RB];
  const float* d[RB];
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) {
    x[r] = p.xq + (r0 + r) * p.xstride;
    init[r] = p.lane_init + (r0 + r) * p.xlanes;
    d[r] = p.lane_scale + (r0 + r) * p.xlanes;
  }
  __m512 acc[OB][RB];
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o)
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) acc[o][r] = _mm512_setzero_ps();
  // block b (its codes under `mask`, its groups' scales under `smask`)
  auto step = [&](int64_t b, __mmask64 mask, __mmask16 smask) __attribute__((always_inline)) {
    const int64_t g0 = (b * B) >> lg;
    __m512i lo[OB], hi[OB];
    __m512 sc[OB];
#pragma GCC unroll 16
    for (int o = 0; o < OB; ++o) {
      const __m512i c = _mm512_maskz_loadu_epi8(mask, w[o] + b * 64);
      // the next output block's line: without it a weight larger than the last-level cache
      // streams at a third of the rate (int8 768->50257: 6.7 -> 2.8 ms); a hint never faults
      _mm_prefetch(reinterpret_cast<const char*>(w[o] + OB * p.row_bytes + b * 64), _MM_HINT_T0);
      if constexpr (BITS == 8) {
        lo[o] = _mm512_xor_si512(c, flip);
      } else {
        lo[o] = _mm512_and_si512(c, nibble);
        hi[o] = _mm512_and_si512(_mm512_srli_epi16(c, 4), nibble);
      }
      sc[o] = _mm512_permutexvar_ps(spread, load_halves(smask, s[o] + g0));
    }
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
      const __m512i xa = _mm512_loadu_si512(x[r] + b * B);
      const __m512i xb = BITS == 8 ? xa : _mm512_loadu_si512(x[r] + b * B + 64);
      const __m512i start = _mm512_loadu_si512(init[r] + b * 16);
      const __m512 dr = _mm512_loadu_ps(d[r] + b * 16);
#pragma GCC unroll 16
      for (int o = 0; o < OB; ++o) {
        __m512i dot = _mm512_dpbusd_epi32(start, lo[o], xa);
        if constexpr (BITS == 4) dot = _mm512_dpbusd_epi32(dot, hi[o], xb);
        acc[o][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(sc[o], dr), acc[o][r]);
      }
    }
  };
  const __mmask16 smask = __mmask16((1u << per_block) - 1);
  for (int64_t b = 0; b < full; ++b) step(b, ~__mmask64(0), smask);
  if (full < blocks) {  // a last, partial block
    const int64_t bytes = (p.in - full * B) * BITS / 8;
    step(full, (__mmask64(1) << bytes) - 1, __mmask16((1u << std::min(per_block, p.groups - full * group_step)) - 1));
  }
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o)
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r)
      p.y[(r0 + r) * p.ystride + o0 + o] = _mm512_reduce_add_ps(acc[o][r]) - float_zero_term(p, o0 + o, r0 + r) +
                                       (p.bias ? p.bias[o0 + o] : 0.f);
}

// Output rows per block: 8 streams of codes in flight per thread for one row of x (the decode
// step). The ~120M Llama shape's 85 matrices back to back, 2 threads, one row, alternated runs:
// int8 4.6-5.4 ms against 5.1-6.1 with blocks of 4 (20-23 GB/s against 17.5-20.7); int4 level
// (3.1 ms) in one run and 2.6-3.0 against 3.0-3.3 in another; 2 and 4 rows of x level.
constexpr int64_t kOutBlock = 8;

// Output rows o0..o0+OB-1 (OB = kOutBlock or 1) for every row of x, in chunks of 4, 2, 1 rows
// (chunks of 4 and 2 take the output rows 2 and 4 at a time, so their accumulators stay in
// registers).
template <int BITS, int OB>
void all_rows(const Problem& p, int64_t o0) {
  int64_t r = 0;
  for (; r + 4 <= p.rows; r += 4) {
    if constexpr (OB == 1) {
      block<BITS, 1, 4>(p, o0, r);
    } else {
      for (int o = 0; o < OB; o += 2) block<BITS, 2, 4>(p, o0 + o, r);
    }
  }
  if (r + 2 <= p.rows) {
    if constexpr (OB == 1) {
      block<BITS, 1, 2>(p, o0, r);
    } else {
      for (int o = 0; o < OB; o += 4) block<BITS, 4, 2>(p, o0 + o, r);
    }
    r += 2;
  }
  if (r < p.rows) block<BITS, OB, 1>(p, o0, r);
}

template <int BITS>
void vnni(const Problem& p, int64_t o_begin, int64_t o_end) {
  int64_t o = o_begin;
  for (; o + kOutBlock <= o_end; o += kOutBlock) all_rows<BITS, kOutBlock>(p, o);
  for (; o < o_end; ++o) all_rows<BITS, 1>(p, o);
}

#endif  // HAVEN_VNNI

bool vectorised(int64_t group) {
#if defined(HAVEN_VNNI)
  return group >= 32 && (group & (group - 1)) == 0 && group <= 128;  // 32, 64, 128
#else
  (void)group;
  return false;
#endif
}

// The size of x's blocks of one d each: 4 inputs for int8, 8 for int4 (one int32 lane of the
// VNNI path), or the weight's group where it is not a multiple of that.
int64_t x_group(int64_t bits, int64_t group) {
  const int64_t size = bits == 8 ? 4 : 8;
  return group % size == 0 ? size : group;
}

// x quantized per row and block (see the top): codes in input order (or the int4 VNNI layout),
// d and S per block (rows, lanes), zero-padded, and the sum of d * S over each of the weight's
// groups (only for a float zero).
struct QuantizedX {
  std::vector<int8_t> codes;
  std::vector<float> scale, term;
  std::vector<int32_t> sum;
  int64_t stride, lanes;
};

// One row, any block size n: codes in input order.
void quantize_row(const float* x, int64_t in, int64_t n, int8_t* codes, float* scale, int32_t* sum) {
  for (int64_t j = 0; j < in / n; ++j) {
    float top = 0.f;
    for (int64_t k = j * n; k < (j + 1) * n; ++k) top = std::max(top, std::fabs(x[k]));
    const float d = top / 127.f;
    int32_t total = 0;
    for (int64_t k = j * n; k < (j + 1) * n; ++k) {
      const float v = d > 0.f ? std::nearbyint(x[k] / d) : 0.f;
      codes[k] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, v)));
      total += codes[k];
    }
    scale[j] = d;
    sum[j] = total;
  }
}

#if defined(HAVEN_VNNI)
// The same for blocks of N = 4 or 8, 16 inputs at a time (the same operations: bit-identical).
// The outputs must have room for whole vectors: codes to a multiple of 16, scale and sum to a
// multiple of 16 / N, past the end.
template <int N>
void quantize_row_avx512(const float* x, int64_t in, int8_t* codes, float* scale, int32_t* sum) {
  const __m512 limit = _mm512_set1_ps(127.f);
  const __m512i top_code = _mm512_set1_epi32(127), bottom_code = _mm512_set1_epi32(-127);
  constexpr __mmask16 firsts = N == 4 ? 0x1111 : 0x0101;  // the first lane of each block
  for (int64_t k = 0; k < in; k += 16) {
    const __mmask16 m = in - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (in - k)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + k);
    __m512 top = _mm512_abs_ps(v);  // each lane: the max over its block of N lanes
    top = _mm512_max_ps(top, _mm512_permute_ps(top, 0xB1));
    top = _mm512_max_ps(top, _mm512_permute_ps(top, 0x4E));
    if constexpr (N == 8) top = _mm512_max_ps(top, _mm512_shuffle_f32x4(top, top, 0xB1));
    const __m512 d = _mm512_div_ps(top, limit);
    const __mmask16 live = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_GT_OQ);
    __m512i q = _mm512_maskz_cvtps_epi32(live, _mm512_div_ps(v, _mm512_mask_blend_ps(live, limit, d)));
    q = _mm512_max_epi32(_mm512_min_epi32(q, top_code), bottom_code);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + k), _mm512_cvtepi32_epi8(q));
    __m512i t = _mm512_add_epi32(q, _mm512_shuffle_epi32(q, _MM_PERM_CDAB));
    t = _mm512_add_epi32(t, _mm512_shuffle_epi32(t, _MM_PERM_BADC));
    if constexpr (N == 8) t = _mm512_add_epi32(t, _mm512_shuffle_i32x4(t, t, 0xB1));
    constexpr int per = 16 / N;
    float ds[16];
    int32_t ts[16];
    _mm512_storeu_ps(ds, _mm512_maskz_compress_ps(firsts, d));
    _mm512_storeu_si512(ts, _mm512_maskz_compress_epi32(firsts, t));
    for (int i = 0; i < per; ++i) {
      scale[k / N + i] = ds[i];
      sum[k / N + i] = ts[i];
    }
  }
}

// Codes of one row in input order -> per 128 inputs, the 64 even ones then the 64 odd ones.
void split_even_odd(const int8_t* in_order, int64_t padded, int8_t* out) {
  alignas(64) int8_t even_index[64], odd_index[64];
  for (int i = 0; i < 64; ++i) {
    even_index[i] = static_cast<int8_t>(2 * i);
    odd_index[i] = static_cast<int8_t>(2 * i + 1);
  }
  const __m512i even = _mm512_load_si512(even_index), odd = _mm512_load_si512(odd_index);
  for (int64_t b = 0; b < padded; b += 128) {
    const __m512i lo = _mm512_loadu_si512(in_order + b), hi = _mm512_loadu_si512(in_order + b + 64);
    _mm512_storeu_si512(out + b, _mm512_permutex2var_epi8(lo, even, hi));
    _mm512_storeu_si512(out + b + 64, _mm512_permutex2var_epi8(lo, odd, hi));
  }
}
#endif

// Into `qx` (the calling thread's buffers, reused from call to call: no allocation per call once
// they have grown).
void quantize_x(const float* x, int64_t rows, int64_t in, int64_t group, int64_t xgroup, bool fast, int bits,
                bool float_zero, QuantizedX& qx) {
  const int64_t groups = in / group, xgroups = in / xgroup;
  qx.stride = bits == 4 ? (in + 127) / 128 * 128 : (in + 63) / 64 * 64;  // whole VNNI blocks, zero-padded
  qx.lanes = fast ? qx.stride / xgroup : xgroups;
  qx.codes.assign(rows * qx.stride, 0);
  qx.scale.assign(rows * qx.lanes + 16, 0.f);
  qx.sum.assign(rows * qx.lanes + 16, 0);
  thread_local std::vector<int8_t> row;
  row.assign(fast && bits == 4 ? qx.stride : 0, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int8_t* dst = qx.codes.data() + r * qx.stride;
    float* scale = qx.scale.data() + r * qx.lanes;
    int32_t* sum = qx.sum.data() + r * qx.lanes;
#if defined(HAVEN_VNNI)
    if (fast) {
      if (bits == 8) {
        quantize_row_avx512<4>(x + r * in, in, dst, scale, sum);
      } else {
        quantize_row_avx512<8>(x + r * in, in, row.data(), scale, sum);
        split_even_odd(row.data(), qx.stride, dst);
      }
      continue;
    }
#endif
    quantize_row(x + r * in, in, xgroup, dst, scale, sum);
  }
  if (float_zero) {
    qx.term.assign(rows * groups, 0.f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < xgroups; ++j)
        qx.term[r * groups + j * xgroup / group] += qx.scale[r * qx.lanes + j] * static_cast<float>(qx.sum[r * qx.lanes + j]);
  }
}

}  // namespace

struct Matrix {
  const at::Tensor* qweight;
  const at::Tensor* scales;
  const at::Tensor* zeros;  // nullptr: symmetric
  const at::Tensor* bias;   // nullptr: none
};

// One call for one to three matrices that multiply the same x (a layer's q, k and v
// projections): x is quantized once, the output blocks of all of them are shared out over the
// threads in one parallel region, and their outputs lie side by side in one (..., sum of outs)
// tensor. The matrices share the input size and the format (bits, group, zeros or none).
at::Tensor qlinear_matrices(const at::Tensor& x_in, const std::vector<Matrix>& matrices, int64_t bits, int64_t group) {
  TORCH_CHECK(x_in.dim() >= 1 && x_in.scalar_type() == at::kFloat, "haven::qlinear: x must be float32 (..., in)");
  TORCH_CHECK(bits == 8 || bits == 4, "haven::qlinear: bits must be 8 or 4");
  const size_t count = matrices.size();
  const int64_t in = x_in.size(-1);
  const at::Tensor x = x_in.reshape({-1, in}).contiguous();
  const int64_t rows = x.size(0);
  TORCH_CHECK(group > 0 && in % group == 0 && (bits == 8 || group % 2 == 0), "haven::qlinear: in must be a multiple of group");
  const int64_t groups = in / group;
  Problem shared{};
  shared.rows = rows;
  shared.in = in;
  shared.group = group;
  shared.groups = groups;
  shared.bits = static_cast<int>(bits);
  shared.row_bytes = bits == 8 ? in : in / 2;
  const bool symmetric = matrices[0].zeros == nullptr;
  const bool fast = vectorised(group);
  const int64_t xgroup = x_group(bits, group);
  thread_local QuantizedX qx;
  quantize_x(x.data_ptr<float>(), rows, in, group, xgroup, fast, shared.bits, !symmetric, qx);
  thread_local std::vector<int32_t> lane_init;
#if defined(HAVEN_VNNI)
  if (fast) {  // a lane is one of x's blocks: its d, and its starting value (see the top)
    TORCH_INTERNAL_ASSERT(xgroup == (bits == 8 ? kSpan<8> : kSpan<4>));
    const int32_t zero = static_cast<int32_t>(integer_zero(shared.bits, symmetric, true));
    lane_init.resize(qx.sum.size());
    for (size_t i = 0; i < lane_init.size(); ++i) lane_init[i] = -zero * qx.sum[i];
  }
#endif
  shared.xgroup = xgroup;
  shared.xgroups = in / xgroup;
  shared.xq = qx.codes.data();
  shared.xstride = qx.stride;
  shared.xlanes = qx.lanes;
  shared.xscale = qx.scale.data();
  shared.xsum = qx.sum.data();
  shared.xterm = qx.term.data();
  shared.lane_scale = qx.scale.data();
  shared.lane_init = lane_init.data();
  std::vector<Problem> problems(count, shared);
  int64_t total = 0;
  for (size_t m = 0; m < count; ++m) {
    const at::Tensor& qweight = *matrices[m].qweight;
    const at::Tensor& scales = *matrices[m].scales;
    Problem& p = problems[m];
    p.out = qweight.size(0);
    TORCH_CHECK(qweight.is_contiguous() && qweight.element_size() == 1 && qweight.dim() == 2 &&
                    qweight.size(1) == p.row_bytes,
                "haven::qlinear: qweight must be contiguous codes of shape (out, ", p.row_bytes, ")");
    p.q = static_cast<const uint8_t*>(qweight.data_ptr());
    TORCH_CHECK(scales.is_contiguous() && scales.scalar_type() == at::kHalf && scales.numel() == p.out * groups,
                "haven::qlinear: scales must be contiguous float16 (out, in / group)");
    p.scales = scales.data_ptr<at::Half>();
    TORCH_CHECK((matrices[m].zeros == nullptr) == symmetric, "haven::qlinear: the weights must all have zeros or none");
    if (const at::Tensor* zeros = matrices[m].zeros) {
      TORCH_CHECK(zeros->is_contiguous() && zeros->scalar_type() == at::kHalf && zeros->numel() == scales.numel(),
                  "haven::qlinear: zeros must be contiguous float16 like scales");
      p.zeros = zeros->data_ptr<at::Half>();
    }
    if (const at::Tensor* bias = matrices[m].bias) {
      TORCH_CHECK(bias->is_contiguous() && bias->scalar_type() == at::kFloat && bias->numel() == p.out,
                  "haven::qlinear: bias must be contiguous float32 (out)");
      p.bias = bias->data_ptr<float>();
    }
    total += p.out;
  }
  std::vector<int64_t> shape(x_in.sizes().begin(), x_in.sizes().end());
  shape.back() = total;
  at::Tensor y = at::empty(shape, x.options());
  // each matrix's output blocks, numbered one after another across the matrices
  const int64_t step = kOutBlock;
  std::vector<int64_t> first_block(count + 1, 0);
  int64_t column = 0;
  for (size_t m = 0; m < count; ++m) {
    Problem& p = problems[m];
    p.y = y.data_ptr<float>() + column;
    p.ystride = total;
    column += p.out;
    first_block[m + 1] = first_block[m] + (p.out + step - 1) / step;
  }
  // chunks of at least ~64K multiply-adds, so a small product is not split over threads
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / (step * in * std::max<int64_t>(rows, 1)));
  at::parallel_for(0, first_block[count], grain, [&](int64_t b0, int64_t b1) {
    for (size_t m = 0; m < count && b0 < b1; ++m) {
      const int64_t lo = std::max(b0, first_block[m]), hi = std::min(b1, first_block[m + 1]);
      if (lo >= hi) continue;
      const Problem& p = problems[m];
      const int64_t o0 = (lo - first_block[m]) * step, o1 = std::min(p.out, (hi - first_block[m]) * step);
#if defined(HAVEN_VNNI)
      if (fast) {
        if (bits == 8)
          vnni<8>(p, o0, o1);
        else
          vnni<4>(p, o0, o1);
        continue;
      }
#endif
      portable(p, o0, o1);
    }
  });
  return y;
}

const at::Tensor* given(const c10::optional<at::Tensor>& t) { return t.has_value() ? &*t : nullptr; }

// The op's arguments: the first matrix, then optionally a second and a third (plain optional
// tensors rather than lists, so a torch.compile'd graph calls the op directly from C++).
at::Tensor qlinear(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                 const c10::optional<at::Tensor>& zeros, const c10::optional<at::Tensor>& bias, int64_t bits,
                 int64_t group, const c10::optional<at::Tensor>& qweight2, const c10::optional<at::Tensor>& scales2,
                 const c10::optional<at::Tensor>& zeros2, const c10::optional<at::Tensor>& bias2,
                 const c10::optional<at::Tensor>& qweight3, const c10::optional<at::Tensor>& scales3,
                 const c10::optional<at::Tensor>& zeros3, const c10::optional<at::Tensor>& bias3) {
  std::vector<Matrix> matrices{{&qweight, &scales, given(zeros), given(bias)}};
  TORCH_CHECK(qweight2.has_value() == scales2.has_value() && qweight3.has_value() == scales3.has_value() &&
                  (qweight2.has_value() || !qweight3.has_value()),
              "haven::qlinear: a second or third matrix needs its codes and scales (and the third the second)");
  if (qweight2.has_value()) matrices.push_back({&*qweight2, &*scales2, given(zeros2), given(bias2)});
  if (qweight3.has_value()) matrices.push_back({&*qweight3, &*scales3, given(zeros3), given(bias3)});
  return qlinear_matrices(x, matrices, bits, group);
}

TORCH_LIBRARY_FRAGMENT(haven, m) {
  m.def("qlinear(Tensor x, Tensor qweight, Tensor scales, Tensor? zeros, Tensor? bias, int bits, int group_size, "
        "Tensor? qweight2=None, Tensor? scales2=None, Tensor? zeros2=None, Tensor? bias2=None, "
        "Tensor? qweight3=None, Tensor? scales3=None, Tensor? zeros3=None, Tensor? bias3=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(haven, CPU, m) { m.impl("qlinear", &qlinear); }
