// Quantized matrix x vector products for a few rows (the decode step): y = x W^T + b, with W
// held as in haven/linear/quantize.py: int8 codes (out, in) or int4 codes packed two per byte
// (out, in/2, the even input in the low nibble), one float scale per group of `group` inputs,
// and a float zero per group (asymmetric) or a fixed one (symmetric int4: 8, int8: 0).
// A group's codes are widened to float once and used for every row of x. Output rows are split
// across torch's intra-op threads. Built with -O3 -march=native so the loops are vectorised for
// the CPU it runs on.
#include <torch/extension.h>
#include <ATen/Parallel.h>

namespace {

template <int BITS>
void qgemv_impl(const float* x, int64_t rows, int64_t in, const uint8_t* q, const float* scales,
                const float* zeros, float fixed_zero, const float* bias, int64_t out, int64_t group,
                float* y) {
  const int64_t groups = in / group;
  const int64_t row_bytes = BITS == 8 ? in : in / 2;
  // per row of x and group: the sum of its inputs (for the zero term)
  std::vector<float> xsum(rows * groups);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      float s = 0.f;
      for (int64_t k = 0; k < group; ++k) s += x[r * in + g * group + k];
      xsum[r * groups + g] = s;
    }
  at::parallel_for(0, out, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> w(group);
    std::vector<float> acc(rows);
    for (int64_t o = begin; o < end; ++o) {
      const uint8_t* qrow = q + o * row_bytes;
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t g = 0; g < groups; ++g) {
        float* wp = w.data();
        if (BITS == 8) {
          const int8_t* c = reinterpret_cast<const int8_t*>(qrow) + g * group;
#pragma GCC ivdep
          for (int64_t k = 0; k < group; ++k) wp[k] = static_cast<float>(c[k]);
        } else {
          const uint8_t* c = qrow + g * group / 2;
#pragma GCC ivdep
          for (int64_t k = 0; k < group / 2; ++k) {
            wp[2 * k] = static_cast<float>(c[k] & 0xF);
            wp[2 * k + 1] = static_cast<float>(c[k] >> 4);
          }
        }
        const float s = scales[o * groups + g];
        const float z = zeros ? zeros[o * groups + g] : fixed_zero;
        for (int64_t r = 0; r < rows; ++r) {
          const float* xr = x + r * in + g * group;
          float dot = 0.f;
#pragma omp simd reduction(+ : dot)
          for (int64_t k = 0; k < group; ++k) dot += xr[k] * wp[k];
          acc[r] += s * (dot - z * xsum[r * groups + g]);
        }
      }
      for (int64_t r = 0; r < rows; ++r) y[r * out + o] = acc[r] + (bias ? bias[o] : 0.f);
    }
  });
}

}  // namespace

torch::Tensor qgemv(torch::Tensor x, torch::Tensor qweight, torch::Tensor scales, c10::optional<torch::Tensor> zeros,
                    c10::optional<torch::Tensor> bias, int64_t bits, int64_t group) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.is_contiguous(), "x: contiguous float32 (rows, in)");
  TORCH_CHECK(bits == 8 || bits == 4, "bits must be 8 or 4");
  const int64_t rows = x.size(0), in = x.size(1), out = qweight.size(0);
  TORCH_CHECK(qweight.is_contiguous() && qweight.size(1) == (bits == 8 ? in : in / 2), "qweight shape");
  TORCH_CHECK(in % group == 0 && scales.is_contiguous() && scales.scalar_type() == torch::kFloat32, "scales");
  auto y = torch::empty({rows, out}, x.options());
  const float* zp = nullptr;
  if (zeros.has_value()) {
    TORCH_CHECK(zeros->is_contiguous() && zeros->scalar_type() == torch::kFloat32, "zeros: float32");
    zp = zeros->data_ptr<float>();
  }
  const float* bp = nullptr;
  if (bias.has_value()) {
    TORCH_CHECK(bias->is_contiguous() && bias->scalar_type() == torch::kFloat32, "bias: float32");
    bp = bias->data_ptr<float>();
  }
  const uint8_t* q = static_cast<const uint8_t*>(qweight.data_ptr());
  if (bits == 8)
    qgemv_impl<8>(x.data_ptr<float>(), rows, in, q, scales.data_ptr<float>(), zp, 0.f, bp, out, group, y.data_ptr<float>());
  else
    qgemv_impl<4>(x.data_ptr<float>(), rows, in, q, scales.data_ptr<float>(), zp, 8.f, bp, out, group, y.data_ptr<float>());
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("qgemv", &qgemv, "quantized x vector product (few rows)"); }
