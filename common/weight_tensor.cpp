#include "common/weight_tensor.h"

#include <cstring>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "common/errors.h"
#include "common/half.h"

namespace qsweep {

const char* weight_dtype_name(WeightDType t) {
  switch (t) {
    case WeightDType::F32:
      return "F32";
    case WeightDType::F16:
      return "F16";
    case WeightDType::BF16:
      return "BF16";
    case WeightDType::Quantized:
      return "quantized";
  }
  return "?";
}

WeightTensor WeightTensor::from_matrix(MatrixRM m) {
  WeightTensor t;
  t.rows_ = m.rows();
  t.cols_ = m.cols();
  t.owned_ = std::make_shared<MatrixRM>(std::move(m));
  t.f32_ = t.owned_->data();
  return t;
}

WeightTensor WeightTensor::f32_view(const float* data, int64_t rows, int64_t cols,
                                    std::shared_ptr<const void> keep) {
  QS_ASSERT(rows >= 0 && cols >= 0 && (reinterpret_cast<uintptr_t>(data) % alignof(float)) == 0);
  WeightTensor t;
  t.rows_ = rows;
  t.cols_ = cols;
  t.f32_ = data;
  t.keep_ = std::move(keep);
  return t;
}

WeightTensor WeightTensor::half_view(WeightDType dtype, const void* data, int64_t rows,
                                     int64_t cols, std::shared_ptr<const void> keep) {
  QS_ASSERT(dtype == WeightDType::F16 || dtype == WeightDType::BF16);
  QS_ASSERT(rows >= 0 && cols >= 0);
  WeightTensor t;
  t.rows_ = rows;
  t.cols_ = cols;
  t.dtype_ = dtype;
  t.half_ = data;
  t.keep_ = std::move(keep);
  return t;
}

WeightTensor WeightTensor::quantized(int64_t rows, int64_t cols, size_t stored_bytes,
                                     std::string type, RowDecoder decode, GgmlBlocks blocks,
                                     GroupCodes groups) {
  QS_ASSERT(rows >= 0 && cols >= 0 && decode);
  WeightTensor t;
  t.rows_ = rows;
  t.cols_ = cols;
  t.dtype_ = WeightDType::Quantized;
  t.qbytes_ = stored_bytes;
  t.qtype_ = std::move(type);
  t.decoder_ = std::make_shared<const RowDecoder>(std::move(decode));
  t.blocks_ = blocks;
  t.groups_ = groups;
  return t;
}

std::string WeightTensor::type_name() const {
  return dtype_ == WeightDType::Quantized ? qtype_ : weight_dtype_name(dtype_);
}

size_t WeightTensor::stored_bytes() const {
  switch (dtype_) {
    case WeightDType::F32:
      return size_t(rows() * cols()) * 4;
    case WeightDType::F16:
    case WeightDType::BF16:
      return size_t(size()) * 2;
    case WeightDType::Quantized:
      return qbytes_;
  }
  return 0;
}

void WeightTensor::decode_rows(int64_t r0, int64_t n, float* out) const {
  const int64_t cols = this->cols();
  QS_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= rows(), "decode_rows out of range");
  const size_t count = size_t(n * cols);
  if (count == 0) return;
  switch (dtype_) {
    case WeightDType::F32:
      std::memcpy(out, f32_data() + r0 * cols, count * sizeof(float));
      return;
    case WeightDType::F16:
    case WeightDType::BF16: {
      const auto* p = static_cast<const unsigned char*>(half_) + size_t(r0 * cols_) * 2;
      const bool f16 = dtype_ == WeightDType::F16;
      size_t i0 = 0;
#if defined(__F16C__)
      // binary16 → fp32 is exact; F16C converts 8 at a time to the same values as half_to_float
      // (every finite half, subnormals included: the loader refuses inf/NaN).
      if (f16)
        for (; i0 + 8 <= count; i0 += 8)
          _mm256_storeu_ps(
              out + i0,
              _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i0))));
#endif
      for (size_t i = i0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = f16 ? half_to_float(h) : bf16_to_float(h);
      }
      return;
    }
    case WeightDType::Quantized:
      (*decoder_)(r0, n, out);
      return;
  }
}

MatrixRM WeightTensor::to_matrix() const {
  MatrixRM m(rows(), cols());
  decode_rows(0, rows(), m.data());
  return m;
}

const MatrixRM& WeightTensor::matrix() const {
  QS_ASSERT(owned_, "WeightTensor::matrix() on a tensor not held as owned fp32");
  return *owned_;
}

MatrixRM& WeightTensor::mutable_matrix() {
  if (!owned_ || owned_.use_count() > 1) {
    auto m = std::make_shared<MatrixRM>(to_matrix());
    owned_ = std::move(m);
    dtype_ = WeightDType::F32;
    f32_ = owned_->data();
    half_ = nullptr;
    keep_.reset();
    decoder_.reset();
    qbytes_ = 0;
    qtype_.clear();
    blocks_ = {};
    groups_ = {};
  }
  return *owned_;
}

}  // namespace qsweep
