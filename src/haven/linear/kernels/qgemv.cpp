// Quantized matrix x vector products for a few rows of x (the decode step): y = x W^T + b, with W
// held as in haven/linear/quantize.py, read as saved (no repacking):
//   int8: codes (out, in), one float scale per group of `group` inputs, a float zero per group
//         (asymmetric) or none (symmetric);
//   int4: codes (out, in/2), two per byte, the even input in the low nibble; a float zero per
//         group (asymmetric) or the fixed zero 8 (symmetric).
// Every weight is read back as exactly the float dequantize() makes, (q - zero) * scale, and
// multiplied with x in float32 (weight-only quantization: the result equals F.linear on the
// dequantized weight up to the order of the float sums).
//
// The AVX-512 path (built with -march=native on a CPU that has it) reads the weight once per call:
// a block of 4 output rows at a time, each 16 (int8) or 32 (int4) codes widened in registers and
// multiplied with up to 4 rows of x before the next codes are read; a block is done for every
// row chunk of x while its codes are still in L1. int4 codes become floats by a 16-entry table
// per group ((0..15 - zero) * scale, one register) looked up with a permute: the low nibble
// indexes it directly, the high nibble after one shift. Because a byte holds inputs 2j and 2j+1,
// x is first split, per 32 inputs, into its 16 even and 16 odd entries. Output blocks are shared
// out over torch's intra-op threads. The portable loop below is the fallback for other CPUs.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

struct Problem {
  const float* x;  // (rows, in); for the AVX-512 int4 path, split into even/odd halves per 32
  int64_t rows, in, out, group;
  const uint8_t* q;  // (out, row_bytes)
  int64_t row_bytes;
  const float* scales;  // (out, in / group)
  const float* zeros;   // (out, in / group), or nullptr: the fixed zero
  float fixed_zero;
  const float* bias;  // (out) or nullptr
  float* y;           // (rows, out)
};

// ---- portable: any CPU ---------------------------------------------------------------------

template <int BITS>
void portable(const Problem& p, int64_t o_begin, int64_t o_end) {
  const int64_t groups = p.in / p.group;
  std::vector<float> w(p.in);
  for (int64_t o = o_begin; o < o_end; ++o) {
    const uint8_t* row = p.q + o * p.row_bytes;
    for (int64_t g = 0; g < groups; ++g) {
      const float s = p.scales[o * groups + g];
      const float z = p.zeros ? p.zeros[o * groups + g] : p.fixed_zero;
      for (int64_t k = g * p.group; k < (g + 1) * p.group; ++k) {
        const float c = BITS == 8 ? static_cast<float>(static_cast<int8_t>(row[k]))
                                  : static_cast<float>((row[k / 2] >> (4 * (k & 1))) & 0xF);
        w[k] = (c - z) * s;
      }
    }
    for (int64_t r = 0; r < p.rows; ++r) {
      const float* xr = p.x + r * p.in;
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t k = 0; k < p.in; ++k) dot += xr[k] * w[k];
      p.y[r * p.out + o] = dot + (p.bias ? p.bias[o] : 0.f);
    }
  }
}

// ---- AVX-512 -------------------------------------------------------------------------------

#if defined(__AVX512F__)

// Output rows o0..o0+OB-1 for x rows r0..r0+RB-1.
template <int OB, int RB, bool ASYM>
void int8_block(const Problem& p, int64_t o0, int64_t r0) {
  const int64_t groups = p.in / p.group;
  __m512 acc[OB][RB];
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o)
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) acc[o][r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 s[OB], z[OB];
#pragma GCC unroll 16
    for (int o = 0; o < OB; ++o) {
      s[o] = _mm512_set1_ps(p.scales[(o0 + o) * groups + g]);
      z[o] = ASYM ? _mm512_set1_ps(p.zeros[(o0 + o) * groups + g]) : _mm512_setzero_ps();
    }
    for (int64_t k = g * p.group; k < (g + 1) * p.group; k += 16) {
      __m512 xv[RB];
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r) xv[r] = _mm512_loadu_ps(p.x + (r0 + r) * p.in + k);
#pragma GCC unroll 16
      for (int o = 0; o < OB; ++o) {
        const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p.q + (o0 + o) * p.row_bytes + k));
        __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c));
        w = ASYM ? _mm512_mul_ps(_mm512_sub_ps(w, z[o]), s[o]) : _mm512_mul_ps(w, s[o]);
#pragma GCC unroll 16
        for (int r = 0; r < RB; ++r) acc[o][r] = _mm512_fmadd_ps(w, xv[r], acc[o][r]);
      }
    }
  }
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o)
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r)
      p.y[(r0 + r) * p.out + o0 + o] = _mm512_reduce_add_ps(acc[o][r]) + (p.bias ? p.bias[o0 + o] : 0.f);
}

template <int OB, int RB, bool ASYM>
void int4_block(const Problem& p, int64_t o0, int64_t r0) {
  const int64_t groups = p.in / p.group;
  const __m512 codes = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512 acc[OB][RB];
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o)
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) acc[o][r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 table[OB];  // the float each of the 16 codes stands for in this group
#pragma GCC unroll 16
    for (int o = 0; o < OB; ++o) {
      const float z = ASYM ? p.zeros[(o0 + o) * groups + g] : p.fixed_zero;
      table[o] = _mm512_mul_ps(_mm512_sub_ps(codes, _mm512_set1_ps(z)), _mm512_set1_ps(p.scales[(o0 + o) * groups + g]));
    }
    for (int64_t k = g * p.group; k < (g + 1) * p.group; k += 32) {
      __m512 even[RB], odd[RB];
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r) {
        even[r] = _mm512_loadu_ps(p.x + (r0 + r) * p.in + k);
        odd[r] = _mm512_loadu_ps(p.x + (r0 + r) * p.in + k + 16);
      }
#pragma GCC unroll 16
      for (int o = 0; o < OB; ++o) {
        const __m512i c = _mm512_cvtepu8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p.q + (o0 + o) * p.row_bytes + k / 2)));
        const __m512 lo = _mm512_permutexvar_ps(c, table[o]);  // uses the low 4 bits of each index
        const __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(c, 4), table[o]);
#pragma GCC unroll 16
        for (int r = 0; r < RB; ++r) {
          acc[o][r] = _mm512_fmadd_ps(lo, even[r], acc[o][r]);
          acc[o][r] = _mm512_fmadd_ps(hi, odd[r], acc[o][r]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int o = 0; o < OB; ++o)
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r)
      p.y[(r0 + r) * p.out + o0 + o] = _mm512_reduce_add_ps(acc[o][r]) + (p.bias ? p.bias[o0 + o] : 0.f);
}

template <int BITS, int OB, int RB, bool ASYM>
inline void block(const Problem& p, int64_t o0, int64_t r0) {
  if constexpr (BITS == 8)
    int8_block<OB, RB, ASYM>(p, o0, r0);
  else
    int4_block<OB, RB, ASYM>(p, o0, r0);
}

// Output rows o0..o0+OB-1 for every row of x, in chunks of 4, 2, 1 rows.
template <int BITS, int OB, bool ASYM>
void all_rows(const Problem& p, int64_t o0) {
  int64_t r = 0;
  for (; r + 4 <= p.rows; r += 4) block<BITS, OB, 4, ASYM>(p, o0, r);
  if (r + 2 <= p.rows) {
    block<BITS, OB, 2, ASYM>(p, o0, r);
    r += 2;
  }
  if (r < p.rows) block<BITS, OB, 1, ASYM>(p, o0, r);
}

constexpr int64_t kOutBlock = 4;

template <int BITS, bool ASYM>
void avx512(const Problem& p, int64_t o_begin, int64_t o_end) {
  int64_t o = o_begin;
  for (; o + kOutBlock <= o_end; o += kOutBlock) all_rows<BITS, kOutBlock, ASYM>(p, o);
  for (; o < o_end; ++o) all_rows<BITS, 1, ASYM>(p, o);
}

#endif  // __AVX512F__

template <int BITS>
void run(const Problem& p, int64_t o_begin, int64_t o_end) {
#if defined(__AVX512F__)
  if (p.group % 32 == 0) {
    if (p.zeros)
      avx512<BITS, true>(p, o_begin, o_end);
    else
      avx512<BITS, false>(p, o_begin, o_end);
    return;
  }
#endif
  portable<BITS>(p, o_begin, o_end);
}

bool vectorised(int64_t group) {
#if defined(__AVX512F__)
  return group % 32 == 0;
#else
  (void)group;
  return false;
#endif
}

}  // namespace

at::Tensor qgemv(const at::Tensor& x_in, const at::Tensor& qweight, const at::Tensor& scales,
                 const c10::optional<at::Tensor>& zeros, const c10::optional<at::Tensor>& bias, int64_t bits,
                 int64_t group) {
  TORCH_CHECK(x_in.dim() == 2 && x_in.scalar_type() == at::kFloat, "qgemv: x must be float32 (rows, in)");
  TORCH_CHECK(bits == 8 || bits == 4, "qgemv: bits must be 8 or 4");
  const at::Tensor x = x_in.contiguous();
  const int64_t rows = x.size(0), in = x.size(1), out = qweight.size(0);
  TORCH_CHECK(group > 0 && in % group == 0 && (bits == 8 || group % 2 == 0), "qgemv: in must be a multiple of group");
  TORCH_CHECK(qweight.is_contiguous() && qweight.element_size() == 1 && qweight.dim() == 2 &&
                  qweight.size(1) == (bits == 8 ? in : in / 2),
              "qgemv: qweight must be contiguous codes of shape (out, ", bits == 8 ? in : in / 2, ")");
  TORCH_CHECK(scales.is_contiguous() && scales.scalar_type() == at::kFloat && scales.numel() == out * (in / group),
              "qgemv: scales must be contiguous float32 (out, in / group)");
  Problem p{nullptr, rows, in, out, group, static_cast<const uint8_t*>(qweight.data_ptr()), qweight.size(1),
            scales.data_ptr<float>(), nullptr, bits == 8 ? 0.f : 8.f, nullptr, nullptr};
  if (zeros.has_value()) {
    TORCH_CHECK(zeros->is_contiguous() && zeros->scalar_type() == at::kFloat && zeros->numel() == scales.numel(),
                "qgemv: zeros must be contiguous float32 like scales");
    p.zeros = zeros->data_ptr<float>();
  }
  if (bias.has_value()) {
    TORCH_CHECK(bias->is_contiguous() && bias->scalar_type() == at::kFloat && bias->numel() == out,
                "qgemv: bias must be contiguous float32 (out)");
    p.bias = bias->data_ptr<float>();
  }
  at::Tensor y = at::empty({rows, out}, x.options());
  p.y = y.data_ptr<float>();
  at::Tensor split;
  if (bits == 4 && vectorised(group)) {  // x's even and odd inputs apart, per 32 (see the top)
    split = at::empty_like(x);
    const float* src = x.data_ptr<float>();
    float* dst = split.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < in; b += 32)
        for (int64_t j = 0; j < 16; ++j) {
          dst[r * in + b + j] = src[r * in + b + 2 * j];
          dst[r * in + b + 16 + j] = src[r * in + b + 2 * j + 1];
        }
    p.x = dst;
  } else {
    p.x = x.data_ptr<float>();
  }
  // chunks of at least ~64K multiply-adds, so a small product is not split over threads
  const int64_t step = 4;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / (step * in * std::max<int64_t>(rows, 1)));
  at::parallel_for(0, (out + step - 1) / step, grain, [&](int64_t b0, int64_t b1) {
    const int64_t o0 = b0 * step, o1 = std::min(out, b1 * step);
    if (bits == 8)
      run<8>(p, o0, o1);
    else
      run<4>(p, o0, o1);
  });
  return y;
}

bool qgemv_vectorised() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

TORCH_LIBRARY_FRAGMENT(haven, m) {
  m.def("qgemv(Tensor x, Tensor qweight, Tensor scales, Tensor? zeros, Tensor? bias, int bits, int group_size) -> Tensor");
  m.def("qgemv_vectorised() -> bool", &qgemv_vectorised);
}

TORCH_LIBRARY_IMPL(haven, CPU, m) { m.impl("qgemv", &qgemv); }
