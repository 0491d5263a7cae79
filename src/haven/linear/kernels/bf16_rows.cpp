// bfloat16 products of a few rows (up to kMaxRows: a decode step of a small batch or a few beams)
// with weights as the checkpoint stores them: y = x W^T + b, everything bfloat16 in and out,
// summed in float32. A bfloat16 model's Linear layers (W (out, in), its rows contiguous; one to
// three layers of one input in one call, their outputs side by side: a block's q, k and v) and
// GPT-2's Conv1D (W (in, out), passed transposed) call it (haven/linear/dense.py, project.py).
//
// Why its own kernel (measured on the project's CPU, 2 threads, the ~120M Llama step's 49
// matrices back to back, one row): F.linear on bfloat16 runs at 13 GB/s of weights (oneDNN
// re-lays the weight on every call) and torch.mv at 21 GB/s, where float32 products stream at
// 25-30; so a bfloat16 decode step, half the bytes of a float32 one, took as long. This kernel
// reads each weight once whatever the row count: 29 GB/s at one row (2.2x F.linear, 1.3x
// torch.mv), 1.9x F.linear at 2 rows, 1.5x at 4, level at 8 (there the dot products bound it).
//
// How, (out, in): blocks of output rows are shared out over torch's intra-op threads. For a
// block, the kernel walks the inputs 32 at a time (one 64-byte line of each weight row),
// multiplying them with the same inputs of each row of x by vdpbf16ps (AVX512-BF16: 32 bfloat16
// products summed pairwise into 16 float32 lanes); each output's 16 lanes are added at the end,
// the bias added and the sum rounded to bfloat16 (to nearest even). Eight rows of W stream side
// by side for one row of x; for 2-4 rows of x, four or two (so the sums stay in registers), the
// next block's lines prefetched as in the int8 kernel. (in, out): see in_out() below.
//
// Numerics: the products of two bfloat16 values are exact in float32; they are summed in float32
// (another order than oneDNN's), so results differ from F.linear's by float32 rounding before
// the final rounding to bfloat16. vdpbf16ps treats subnormal inputs as zero, which changes a sum
// by less than 2^-126 per product.
//
// Built only where the compiler targets AVX512-BF16 (-march=native on such a CPU). Elsewhere the
// op has no CPU kernel, `haven.linear.kernels.bf16_available()` says so, and F.linear runs.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>

namespace {

constexpr int64_t kMaxRows = 8;
constexpr int64_t kOutBlock = 8;

struct Problem {
  const at::BFloat16* x;  // (rows, in), row stride in
  const at::BFloat16* w;  // (out, in): row stride ld; or (in, out) for in_out(): row stride ld
  const at::BFloat16* bias;  // (out) or nullptr
  at::BFloat16* y;           // (rows, ystride): this matrix's columns of the output
  int64_t rows, in, out, ld, ystride;
};

// Output rows o0..o0+OB-1 for x rows r0..r0+RB-1.
template <int OB, int RB>
void block(const Problem& p, int64_t o0, int64_t r0) {
  const at::BFloat16* w[OB];
  for (int o = 0; o < OB; ++o) w[o] = p.w + (o0 + o) * p.ld;
  const at::BFloat16* x[RB];
  for (int r = 0; r < RB; ++r) x[r] = p.x + (r0 + r) * p.in;
  __m512 acc[OB][RB];
  for (int o = 0; o < OB; ++o)
    for (int r = 0; r < RB; ++r) acc[o][r] = _mm512_setzero_ps();
  auto step = [&](int64_t k, __mmask32 m) __attribute__((always_inline)) {
    __m512i wv[OB];
    for (int o = 0; o < OB; ++o) {
      wv[o] = _mm512_maskz_loadu_epi16(m, w[o] + k);
      _mm_prefetch(reinterpret_cast<const char*>(w[o] + OB * p.ld + k), _MM_HINT_T0);
    }
    for (int r = 0; r < RB; ++r) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x[r] + k);
      for (int o = 0; o < OB; ++o) acc[o][r] = _mm512_dpbf16_ps(acc[o][r], (__m512bh)wv[o], xv);
    }
  };
  int64_t k = 0;
  for (; k + 32 <= p.in; k += 32) step(k, ~__mmask32(0));
  if (k < p.in) step(k, (__mmask32(1) << (p.in - k)) - 1);
  for (int o = 0; o < OB; ++o)
    for (int r = 0; r < RB; ++r) {
      float v = _mm512_reduce_add_ps(acc[o][r]);
      if (p.bias) v += static_cast<float>(p.bias[o0 + o]);
      p.y[(r0 + r) * p.ystride + o0 + o] = at::BFloat16(v);  // rounds to nearest even
    }
}

// Output rows o0..o0+OB-1 (OB = kOutBlock or 1) for every row of x: chunks of 4, 2 and 1 rows,
// the output rows taken 2 or 4 at a time for chunks of 4 or 2 so the sums stay in registers.
template <int OB>
void all_rows(const Problem& p, int64_t o0) {
  int64_t r = 0;
  for (; r + 4 <= p.rows; r += 4) {
    if constexpr (OB == 1) {
      block<1, 4>(p, o0, r);
    } else {
      for (int o = 0; o < OB; o += 2) block<2, 4>(p, o0 + o, r);
    }
  }
  if (r + 2 <= p.rows) {
    if constexpr (OB == 1) {
      block<1, 2>(p, o0, r);
    } else {
      for (int o = 0; o < OB; o += 4) block<4, 2>(p, o0 + o, r);
    }
    r += 2;
  }
  if (r < p.rows) block<OB, 1>(p, o0, r);
}

// The other layout, (in, out) in memory (GPT-2's Conv1D): the `in` dimension is shared out over
// the threads, each adding x[r, k] * W[k, :] over its rows of W into float32 partial sums (rows x
// out: L1 or L2 resident), eight rows of W at a time; the partial sums and the bias are added and
// rounded at the end (as dense_rows.cpp does in float32). vdpbf16ps wants the two inputs of a
// pair side by side, so rows k and k+1 of W are interleaved by unpacklo/hi: in a chunk of 32
// columns, the low unpack holds columns {0-3, 8-11, 16-19, 24-27} of each lane pair and the high
// one the others; the partial sums keep that order (`position`) until the final pass. The lines of
// the rows two steps ahead are prefetched. GPT-2's 48 block matrices back to back, one row: 25
// GB/s, 2.3-2.5x torch.mm (which re-lays the weight per call); 1.4x at 4 rows, level at 8. (Widening
// each weight to float32 by a shift and an FMA instead, without prefetching, ran at 20 GB/s;
// prefetching one step ahead, 23; four steps, 26.)

// Where column e (0..31) of a 32-column chunk sits in the chunk's partial sums.
inline int64_t position(int64_t e) { return ((e & 7) >= 4 ? 16 : 0) + (e >> 3) * 4 + (e & 3); }

template <int R>
void add_rows_in_out(const at::BFloat16* x, int64_t K, const at::BFloat16* w, int64_t ld, int64_t N, float* acc,
                     int64_t k0, int64_t k1) {
  const int64_t padded = (N + 31) / 32 * 32;
  std::fill(acc, acc + R * padded, 0.f);
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(x);
  for (int64_t k = k0; k < k1; k += 8) {
    const int64_t U = std::min<int64_t>(8, k1 - k);  // rows of W in this step
    __m512i xs[R][4];  // (x[r, k + 2i], x[r, k + 2i + 1]) in every 32-bit lane; 0 past U
    for (int r = 0; r < R; ++r)
      for (int i = 0; i < 4; ++i) {
        const uint32_t even = 2 * i < U ? bits[r * K + k + 2 * i] : 0, odd = 2 * i + 1 < U ? bits[r * K + k + 2 * i + 1] : 0;
        xs[r][i] = _mm512_set1_epi32(static_cast<int>(even | (odd << 16)));
      }
    for (int64_t j = 0; j < N; j += 32) {
      const __mmask32 m = N - j >= 32 ? ~__mmask32(0) : (__mmask32(1) << (N - j)) - 1;
      __m512i lo[4], hi[4];
      for (int i = 0; i < 4; ++i) {
        const __m512i a = 2 * i < U ? _mm512_maskz_loadu_epi16(m, w + (k + 2 * i) * ld + j) : _mm512_setzero_si512();
        const __m512i b = 2 * i + 1 < U ? _mm512_maskz_loadu_epi16(m, w + (k + 2 * i + 1) * ld + j) : _mm512_setzero_si512();
        lo[i] = _mm512_unpacklo_epi16(a, b);
        hi[i] = _mm512_unpackhi_epi16(a, b);
        // the lines two steps ahead (a hint: never faults past the end)
        _mm_prefetch(reinterpret_cast<const char*>(w + (k + 16 + 2 * i) * ld + j), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(w + (k + 17 + 2 * i) * ld + j), _MM_HINT_T0);
      }
      for (int r = 0; r < R; ++r) {
        float* sums = acc + r * padded + j;
        __m512 low = _mm512_loadu_ps(sums), high = _mm512_loadu_ps(sums + 16);
        for (int i = 0; i < 4; ++i) {
          low = _mm512_dpbf16_ps(low, (__m512bh)lo[i], (__m512bh)xs[r][i]);
          high = _mm512_dpbf16_ps(high, (__m512bh)hi[i], (__m512bh)xs[r][i]);
        }
        _mm512_storeu_ps(sums, low);
        _mm512_storeu_ps(sums + 16, high);
      }
    }
  }
}

using InOut = void (*)(const at::BFloat16*, int64_t, const at::BFloat16*, int64_t, int64_t, float*, int64_t, int64_t);
constexpr InOut kInOut[kMaxRows] = {add_rows_in_out<1>, add_rows_in_out<2>, add_rows_in_out<3>, add_rows_in_out<4>,
                                    add_rows_in_out<5>, add_rows_in_out<6>, add_rows_in_out<7>, add_rows_in_out<8>};

void in_out(const Problem& p) {
  const int64_t K = p.in, N = p.out, R = p.rows, padded = (N + 31) / 32 * 32;
  // one share of at least 64 rows of W per thread, each starting on a multiple of 8
  const int64_t shares = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), K / 64));
  const int64_t per_share = ((K + shares - 1) / shares + 7) / 8 * 8;
  at::Tensor partial = at::empty({shares * R * padded}, at::kFloat);  // each share zeroes its own
  float* sums = partial.data_ptr<float>();
  at::parallel_for(0, shares, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t k0 = std::min(K, s * per_share), k1 = std::min(K, k0 + per_share);
      kInOut[R - 1](p.x, K, p.w, p.ld, N, sums + s * R * padded, k0, k1);
    }
  });
  at::parallel_for(0, N, 4096, [&](int64_t j0, int64_t j1) {
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t at = (j & ~int64_t{31}) + position(j & 31);
        float v = p.bias ? static_cast<float>(p.bias[j]) : 0.f;
        for (int64_t s = 0; s < shares; ++s) v += sums[(s * R + r) * padded + at];
        p.y[r * p.ystride + j] = at::BFloat16(v);
      }
  });
}

// Whether `weight` is an (out, in) matrix whose rows are contiguous (else its columns are, or
// neither: refused).
bool rows_contiguous(const at::Tensor& weight) {
  TORCH_CHECK(weight.scalar_type() == at::kBFloat16 && weight.dim() == 2 && weight.device().is_cpu(),
              "haven::bf16_rows: the weight must be a bfloat16 (out, in) matrix on the CPU");
  const bool rows = weight.stride(1) == 1 && weight.stride(0) >= weight.size(1);
  TORCH_CHECK(rows || (weight.stride(0) == 1 && weight.stride(1) >= weight.size(0)),
              "haven::bf16_rows: the weight's rows or its columns must be contiguous");
  return rows;
}

// One call for one to three (out, in) matrices that multiply the same x (a layer's q, k and v
// projections): one parallel region over all their output blocks, the outputs side by side in one
// (..., sum of outs) tensor. Several matrices must have contiguous rows; one (a Conv1D's weight,
// transposed) may have contiguous columns instead.
at::Tensor bf16_rows(const at::Tensor& x_in, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                     const c10::optional<at::Tensor>& weight2, const c10::optional<at::Tensor>& bias2,
                     const c10::optional<at::Tensor>& weight3, const c10::optional<at::Tensor>& bias3) {
  TORCH_CHECK(x_in.device().is_cpu() && x_in.scalar_type() == at::kBFloat16, "haven::bf16_rows: x must be bfloat16 on the CPU");
  TORCH_CHECK(weight2.has_value() || !weight3.has_value(), "haven::bf16_rows: a third matrix needs a second");
  TORCH_CHECK((weight2.has_value() || !bias2.has_value()) && (weight3.has_value() || !bias3.has_value()),
              "haven::bf16_rows: a bias without its matrix");
  std::vector<std::pair<const at::Tensor*, const c10::optional<at::Tensor>*>> matrices{{&weight, &bias}};
  if (weight2.has_value()) matrices.push_back({&*weight2, &bias2});
  if (weight3.has_value()) matrices.push_back({&*weight3, &bias3});
  const bool rows = rows_contiguous(weight);
  const int64_t K = weight.size(1);
  TORCH_CHECK(x_in.dim() >= 1 && x_in.size(-1) == K, "haven::bf16_rows: x's last dimension (", x_in.size(-1),
              ") is not the weight's in (", K, ")");
  const at::Tensor x = x_in.reshape({-1, K}).contiguous();
  const int64_t R = x.size(0);
  TORCH_CHECK(R <= kMaxRows, "haven::bf16_rows: ", R, " rows; the kernel takes at most ", kMaxRows);
  int64_t total = 0;
  for (const auto& [w, b] : matrices) {
    TORCH_CHECK(rows_contiguous(*w) == rows && (rows || matrices.size() == 1),
                "haven::bf16_rows: several matrices must each have contiguous rows");
    TORCH_CHECK(w->size(1) == K, "haven::bf16_rows: the matrices must share their in");
    if (b->has_value())
      TORCH_CHECK((*b)->scalar_type() == at::kBFloat16 && (*b)->numel() == w->size(0) && (*b)->is_contiguous(),
                  "haven::bf16_rows: the bias must be a contiguous bfloat16 vector of ", w->size(0), " values");
    total += w->size(0);
  }
  std::vector<int64_t> shape(x_in.sizes().begin(), x_in.sizes().end());
  shape.back() = total;
  at::Tensor y = at::empty(shape, x.options());
  if (R == 0 || total == 0) return y;
  std::vector<Problem> problems;
  std::vector<int64_t> first_block{0};
  int64_t column = 0;
  for (const auto& [w, b] : matrices) {
    const int64_t N = w->size(0);
    problems.push_back({x.data_ptr<at::BFloat16>(), w->data_ptr<at::BFloat16>(),
                        b->has_value() ? (*b)->data_ptr<at::BFloat16>() : nullptr, y.data_ptr<at::BFloat16>() + column,
                        R, K, N, rows ? w->stride(0) : w->stride(1), total});
    column += N;
    first_block.push_back(first_block.back() + (N + kOutBlock - 1) / kOutBlock);
  }
  if (K == 0) {
    for (const Problem& p : problems)
      for (int64_t r = 0; r < R; ++r)
        for (int64_t o = 0; o < p.out; ++o) p.y[r * total + o] = p.bias ? p.bias[o] : at::BFloat16(0.f);
    return y;
  }
  if (!rows) {
    in_out(problems[0]);
    return y;
  }
  // chunks of at least ~64K multiply-adds, so a small product is not split over threads
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / (kOutBlock * K * R));
  at::parallel_for(0, first_block.back(), grain, [&](int64_t b0, int64_t b1) {
    for (size_t m = 0; m < problems.size() && b0 < b1; ++m) {
      const int64_t lo = std::max(b0, first_block[m]), hi = std::min(b1, first_block[m + 1]);
      if (lo >= hi) continue;
      const Problem& p = problems[m];
      const int64_t o1 = std::min(p.out, (hi - first_block[m]) * kOutBlock);
      int64_t o = (lo - first_block[m]) * kOutBlock;
      for (; o + kOutBlock <= o1; o += kOutBlock) all_rows<kOutBlock>(p, o);
      for (; o < o1; ++o) all_rows<1>(p, o);
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(haven, CPU, m) { m.impl("bf16_rows", &bf16_rows); }
#endif

TORCH_LIBRARY_FRAGMENT(haven, m) {
  m.def("bf16_rows(Tensor x, Tensor weight, Tensor? bias, Tensor? weight2=None, Tensor? bias2=None, "
        "Tensor? weight3=None, Tensor? bias3=None) -> Tensor");
}
