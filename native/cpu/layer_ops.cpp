// CPU layer operations (params in native/core/model_params.h): Linear, RMSNorm, RoPE, SwiGLU
// and embedding. Any float dtype in, f32 arithmetic, results rounded to the output dtype.
//
// Launch: Linear takes each input row through its input transform (LinearInput) into f32, then
// splits the output features into blocks across the thread pool; each task widens its weight
// rows to f32 once and serves every input row from them, so the weights — the bytes that
// dominate decode — are read once per call, each input row against eight weight rows at a time
// (dotBlock1x8); an output transform (LinearOutput) is the plain product into a buffer of its
// own, then the swiGlu or ropeAppendKv op. The row-wise ops split rows.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "cpu_kernels.h"
#include "vector_math.h"

namespace lt::cpu {

namespace {

// One row through RMSNorm, in place: row / sqrt(mean(row²) + eps) · weight.
void rmsNormRow(float* row, const float* weight, int32_t dim, float eps) {
  const float inv = 1.f / std::sqrt(dot(row, row, dim) / float(dim) + eps);
  for (int32_t i = 0; i < dim; i++) row[i] = row[i] * inv * weight[i];
}

// SiLU, g / (1 + e^-g). Below g = -80 it is -e^(g + ln(-g)) (1 + e^g rounds to 1 there): e^-g
// overflows to inf below -88.7, which would give -0 where silu is still a normal number (to
// g ≈ -91.8), as the CUDA kernels compute it too.
float silu(float g) {
  if (g < -80.f) return -std::exp(g + std::log(-g));
  return g / (1.f + std::exp(-g));
}

// One row through SwiGLU, in place: gate[i] = silu(gate[i]) · up[i].
void swiGluRow(float* gate, const float* up, int32_t inner) {
  for (int32_t i = 0; i < inner; i++) gate[i] = silu(gate[i]) * up[i];
}

// Row r of linear's input after its input transform (LinearInput), widened to f32 into `row`,
// rounded to the activation dtype as a separate op would have stored it: the rmsNorm and swiGlu
// ops' own row arithmetic, so fusing them changes no result.
void linearInputRow(const LinearParams& p, const float* norm, int64_t r, float* row, std::vector<float>& up) {
  const int32_t k = p.k;
  switch (p.input) {
    case LinearInput::Plain:
      loadAsFloat(p.xType, p.x, size_t(r) * k, k, row);
      return;
    case LinearInput::RmsNorm:
      loadAsFloat(p.xType, p.x, size_t(r) * k, k, row);
      rmsNormRow(row, norm, k, p.eps);
      break;
    case LinearInput::SwiGlu:
      loadAsFloat(p.xType, p.x, size_t(r) * 2 * k, k, row);
      loadAsFloat(p.xType, p.x, size_t(r) * 2 * k + k, k, up.data());
      swiGluRow(row, up.data(), k);
      break;
  }
  roundToDType(p.xType, row, k);
}

}  // namespace

void linear(const LinearParams& p) {
  if (p.output != LinearOutput::Plain) {
    // The product as the plain op stores it, then the separate op: the definition, not a shortcut.
    // Host tensor memory, whose freed blocks wait for the next request of their size: a prefill
    // asks for the same product every layer, and a fresh mapping would fault in every page again.
    const Storage product(Device{}, size_t(p.m) * p.n * dtypeSize(p.xType));
    LinearParams plain = p;
    plain.output = LinearOutput::Plain;
    plain.y = product.data;
    linear(plain);
    if (p.output == LinearOutput::SwiGlu) {
      SwiGluParams glu;
      glu.dtype = p.xType, glu.x = product.data, glu.y = p.y, glu.rows = p.m, glu.inner = p.n / 2;
      swiGlu(glu);
    } else {
      RopeAppendKvParams rope = p.rope;
      rope.qkv = product.data;
      ropeAppendKv(rope);
    }
    return;
  }
  const int32_t m = p.m, n = p.n, k = p.k;
  std::vector<float> norm(p.input == LinearInput::RmsNorm ? k : 0);
  if (p.input == LinearInput::RmsNorm) loadAsFloat(p.wType, p.norm, 0, k, norm.data());
  std::vector<float> xf(size_t(m) * k);
  parallelFor(m, [&](int64_t begin, int64_t end) {
    std::vector<float> up(p.input == LinearInput::SwiGlu ? k : 0);
    for (int64_t r = begin; r < end; r++) linearInputRow(p, norm.data(), r, &xf[size_t(r) * k], up);
  });
  constexpr int32_t kBlock = 16;  // weight rows per task: 16 · k f32 stay in L2
  constexpr int32_t kCols = 8;    // dotBlock1x8's weight rows
  parallelFor((n + kBlock - 1) / kBlock, [&](int64_t begin, int64_t end) {
    std::vector<float> wf(size_t(kBlock) * k), bias(kBlock, 0.f), yrow(kBlock), before(kBlock, 0.f);
    for (int64_t block = begin; block < end; block++) {
      const int32_t j0 = int32_t(block) * kBlock, rows = std::min(kBlock, n - j0);
      loadAsFloat(p.wType, p.w, size_t(j0) * k, size_t(rows) * k, wf.data());
      if (p.bias) loadAsFloat(p.wType, p.bias, j0, rows, bias.data());
      for (int32_t r = 0; r < m; r++) {
        const float* xr = &xf[size_t(r) * k];
        if (p.accumulate) loadAsFloat(p.xType, p.y, size_t(r) * n + j0, rows, before.data());
        for (int32_t j = 0; j < rows; j += kCols) {
          // A short block repeats its last weight row, so every output comes from dotBlock1x8.
          const float* w[kCols];
          for (int32_t c = 0; c < kCols; c++) w[c] = &wf[size_t(std::min(j + c, rows - 1)) * k];
          float out[kCols];
          dotBlock1x8(xr, w, k, out);
          for (int32_t c = 0; c < kCols && j + c < rows; c++) yrow[j + c] = before[j + c] + (out[c] + bias[j + c]);
        }
        storeFromFloat(p.xType, yrow.data(), p.y, size_t(r) * n + j0, rows);
      }
    }
  });
}

void rmsNorm(const RmsNormParams& p) {
  parallelFor(
      p.rows,
      [&](int64_t begin, int64_t end) {
        std::vector<float> x(p.dim), w(p.dim), res(p.dim);
        loadAsFloat(p.wType, p.weight, 0, p.dim, w.data());
        for (int64_t r = begin; r < end; r++) {
          const size_t off = size_t(r) * p.dim;
          loadAsFloat(p.xType, p.x, off, p.dim, x.data());
          if (p.residual) {
            loadAsFloat(p.xType, p.residual, off, p.dim, res.data());
            for (int32_t i = 0; i < p.dim; i++) res[i] += x[i];
            storeFromFloat(p.xType, res.data(), p.residual, off, p.dim);
            // The norm reads the residual as stored, so a bf16 run normalises what it keeps.
            loadAsFloat(p.xType, p.residual, off, p.dim, x.data());
          }
          rmsNormRow(x.data(), w.data(), p.dim, p.eps);
          storeFromFloat(p.xType, x.data(), p.y, off, p.dim);
        }
      },
      4);
}

static void rotateRows(DType dtype, void* data, int32_t heads, int32_t d, int64_t token, const float* cosv,
                       const float* sinv, float* row) {
  const int32_t half = d / 2;
  for (int32_t h = 0; h < heads; h++) {
    const size_t off = (size_t(token) * heads + h) * d;
    loadAsFloat(dtype, data, off, d, row);
    for (int32_t i = 0; i < half; i++) {
      const float a = row[i], b = row[i + half];
      row[i] = a * cosv[i] - b * sinv[i];
      row[i + half] = b * cosv[i] + a * sinv[i];
    }
    storeFromFloat(dtype, row, data, off, d);
  }
}

void rope(const RopeParams& p) {
  const int32_t half = p.d / 2;
  parallelFor(
      p.tokens,
      [&](int64_t begin, int64_t end) {
        std::vector<float> cosv(half), sinv(half), row(p.d);
        for (int64_t t = begin; t < end; t++) {
          for (int32_t i = 0; i < half; i++) {
            // The angle is formed in f32 as transformers forms it (position · inv_freq), then
            // cos/sin are taken in double so large positions lose nothing more.
            const float angle = float(p.positions[t]) * p.invFreq[i];
            cosv[i] = float(std::cos(double(angle)));
            sinv[i] = float(std::sin(double(angle)));
          }
          rotateRows(p.dtype, p.q, p.hq, p.d, t, cosv.data(), sinv.data(), row.data());
          rotateRows(p.dtype, p.k, p.hkv, p.d, t, cosv.data(), sinv.data(), row.data());
        }
      },
      4);
}

void swiGlu(const SwiGluParams& p) {
  parallelFor(
      p.rows,
      [&](int64_t begin, int64_t end) {
        std::vector<float> gate(p.inner), up(p.inner);
        for (int64_t r = begin; r < end; r++) {
          loadAsFloat(p.dtype, p.x, size_t(r) * 2 * p.inner, p.inner, gate.data());
          loadAsFloat(p.dtype, p.x, size_t(r) * 2 * p.inner + p.inner, p.inner, up.data());
          swiGluRow(gate.data(), up.data(), p.inner);
          storeFromFloat(p.dtype, gate.data(), p.y, size_t(r) * p.inner, p.inner);
        }
      },
      4);
}

void embedding(const EmbeddingParams& p) {
  parallelFor(
      p.tokens,
      [&](int64_t begin, int64_t end) {
        std::vector<float> row(p.dim);
        for (int64_t t = begin; t < end; t++) {
          loadAsFloat(p.tableType, p.table, size_t(p.ids[t]) * p.dim, p.dim, row.data());
          storeFromFloat(p.yType, row.data(), p.y, size_t(t) * p.dim, p.dim);
        }
      },
      16);
}

}  // namespace lt::cpu
