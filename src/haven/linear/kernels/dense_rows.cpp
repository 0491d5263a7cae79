// Float32 products of a few rows (up to kMaxRows: a decode step of a small batch or a few beams)
// with a weight stored (in, out): y = x W + b. `PreTrainedModel.optimize_for_inference()` stores a
// decoder's Linear weights this way (those a block multiplies one input by side by side, as
// column blocks of one matrix: the weight's rows may be longer than its out); GPT-2's Conv1D
// weights are stored so in the checkpoint. Haven calls it from 2 rows on (see
// haven/linear/dense.py: at one row MKL's GEMM streams this layout as fast).
//
// Why its own kernel (measured on the project's CPU, 2 threads, the ~120M Llama step's 85
// matrices called back to back): with the weight stored (in, out), MKL's GEMM is faster than any
// product on the checkpoint's (out, in) layout at one row (by 3-13%, run to run) and from 4 rows
// on, but takes 1.5x as long at 2 and 3 rows. This kernel streams the weight once at every row
// count up to kMaxRows: 1.05-1.1x faster than the (out, in) layout's best at 2-3 rows,
// 1.5-1.66x at 4-8, 1.1-1.25x faster than oneDNN's prepacked copy at 2-8 rows, and level with
// MKL at one row.
//
// How: the `in` dimension is shared out over torch's intra-op threads. Each thread streams its
// rows of W front to back, eight at a time (which halves the partial sums' loads and stores per
// weight byte against four at a time, worth 4-6% at 2-3 rows; sixteen gained nothing more), every
// row of x adding x[r, k] * W[k, :] into the thread's partial sums (rows x out floats: L1 or L2
// resident). The threads' partial sums and the bias are added at the end, that pass shared out
// over the columns.
//
// Numerics: float32 throughout, summed in another order than MKL's, so results differ from
// F.linear's by float32 rounding only.
//
// Built only where the compiler targets AVX-512F (-march=native on such a CPU). Elsewhere the op
// has no CPU kernel, `haven.linear.kernels.dense_available()` says so, and no weight is re-laid.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>

namespace {

constexpr int64_t kMaxRows = 8;

// acc (R, N) += x[:, 0:U] W[0:U, :], for R rows of x (row stride K) and U consecutive rows of W
// (row stride ld).
template <int R, int U>
inline void add_rows(const float* x, int64_t K, const float* w, int64_t ld, int64_t N, float* acc) {
  __m512 xs[R][U];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < U; ++u) xs[r][u] = _mm512_set1_ps(x[r * K + u]);
  for (int64_t j = 0; j < N; j += 16) {
    const __mmask16 m = N - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (N - j)) - 1);
    __m512 wv[U];
    for (int u = 0; u < U; ++u) wv[u] = _mm512_maskz_loadu_ps(m, w + u * ld + j);
    for (int r = 0; r < R; ++r) {
      float* a = acc + r * N + j;
      __m512 s = _mm512_maskz_loadu_ps(m, a);
      for (int u = 0; u < U; ++u) s = _mm512_fmadd_ps(xs[r][u], wv[u], s);
      _mm512_mask_storeu_ps(a, m, s);
    }
  }
}

// One thread's share: acc (R, N) = x[:, k0:k1] W[k0:k1, :].
template <int R>
void part(const float* x, int64_t K, const float* W, int64_t ld, int64_t N, float* acc, int64_t k0, int64_t k1) {
  std::fill(acc, acc + R * N, 0.f);
  int64_t k = k0;
  for (; k + 8 <= k1; k += 8) add_rows<R, 8>(x + k, K, W + k * ld, ld, N, acc);
  for (; k + 4 <= k1; k += 4) add_rows<R, 4>(x + k, K, W + k * ld, ld, N, acc);
  for (; k < k1; ++k) add_rows<R, 1>(x + k, K, W + k * ld, ld, N, acc);
}

using Part = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t, int64_t);
constexpr Part kParts[kMaxRows] = {part<1>, part<2>, part<3>, part<4>, part<5>, part<6>, part<7>, part<8>};

at::Tensor dense_rows(const at::Tensor& x_in, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x_in.device().is_cpu() && weight.device().is_cpu(), "haven::dense_rows: CPU tensors only");
  TORCH_CHECK(x_in.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat,
              "haven::dense_rows: x and the weight must be float32");
  TORCH_CHECK(weight.dim() == 2 && weight.stride(1) == 1 && weight.stride(0) >= weight.size(1),
              "haven::dense_rows: the weight must be an (in, out) matrix with contiguous rows");
  const int64_t K = weight.size(0), N = weight.size(1), ld = weight.stride(0);
  TORCH_CHECK(x_in.dim() >= 1 && x_in.size(-1) == K, "haven::dense_rows: x's last dimension (", x_in.size(-1),
              ") is not the weight's in (", K, ")");
  const at::Tensor x = x_in.reshape({-1, K}).contiguous();
  const int64_t R = x.size(0);
  TORCH_CHECK(R <= kMaxRows, "haven::dense_rows: ", R, " rows; the kernel takes at most ", kMaxRows);
  const float* b = nullptr;
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->numel() == N && bias->is_contiguous(),
                "haven::dense_rows: the bias must be a contiguous float32 vector of ", N, " values");
    b = bias->data_ptr<float>();
  }
  std::vector<int64_t> shape(x_in.sizes().begin(), x_in.sizes().end());
  shape.back() = N;
  at::Tensor y = at::empty(shape, x.options());
  if (R == 0 || N == 0) return y;
  if (K == 0) return b ? y.copy_(bias->expand_as(y)) : y.zero_();

  // one share of at least 64 rows of W per thread, each starting on a multiple of 4
  const int64_t shares = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), K / 64));
  const int64_t per_share = ((K + shares - 1) / shares + 3) / 4 * 4;
  at::Tensor partial = at::empty({shares, R, N}, x.options());
  float* sums = partial.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  at::parallel_for(0, shares, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t k0 = std::min(K, s * per_share), k1 = std::min(K, k0 + per_share);
      kParts[R - 1](xp, K, wp, ld, N, sums + s * R * N, k0, k1);
    }
  });
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, N, 4096, [&](int64_t j0, int64_t j1) {
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = j0; j < j1; ++j) {
        float v = b ? b[j] : 0.f;
        for (int64_t s = 0; s < shares; ++s) v += sums[(s * R + r) * N + j];
        yp[r * N + j] = v;
      }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(haven, CPU, m) { m.impl("dense_rows", &dense_rows); }
#endif

TORCH_LIBRARY_FRAGMENT(haven, m) { m.def("dense_rows(Tensor x, Tensor weight, Tensor? bias) -> Tensor"); }
