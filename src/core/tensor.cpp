#include "qianjun/tensor.h"

namespace qj {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::U16: return 2;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "fp32";
    case DType::BF16: return "bf16";
    case DType::I32: return "int32";
    case DType::U16: return "uint16";
  }
  return "?";
}

static void set_contiguous_strides(Tensor& t) {
  int64_t s = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    t.stride[i] = s;
    s *= t.shape[i];
  }
}

// Tensors are built from a shape known at compile time (braces) or at run time.
static void set_shape(Tensor& t, const int64_t* dims, size_t count) {
  QJ_CHECK(count >= 1 && count <= size_t(Tensor::kMaxDims),
           "tensor rank must be 1.." + std::to_string(Tensor::kMaxDims));
  for (size_t i = 0; i < count; ++i) {
    QJ_CHECK(dims[i] >= 0, "negative tensor dimension");
    t.shape[size_t(t.ndim++)] = dims[i];
  }
  set_contiguous_strides(t);
}

Tensor::Tensor(void* data_, DType dtype_, std::initializer_list<int64_t> dims, Device device_)
    : data(data_), dtype(dtype_), device(device_) {
  set_shape(*this, dims.begin(), dims.size());
}

Tensor::Tensor(void* data_, DType dtype_, const std::vector<int64_t>& dims, Device device_)
    : data(data_), dtype(dtype_), device(device_) {
  set_shape(*this, dims.data(), dims.size());
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return ndim == 0 ? 0 : n;
}

bool Tensor::is_contiguous() const {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] != 1 && stride[i] != s) return false;
    s *= shape[i];
  }
  return true;
}

float* Tensor::f32() const {
  QJ_CHECK(dtype == DType::F32, std::string("expected an fp32 tensor, got ") + dtype_name(dtype));
  return static_cast<float*>(data);
}

int32_t* Tensor::i32() const {
  QJ_CHECK(dtype == DType::I32, std::string("expected an int32 tensor, got ") + dtype_name(dtype));
  return static_cast<int32_t*>(data);
}

Tensor Tensor::reshape(std::initializer_list<int64_t> dims) const {
  QJ_CHECK(is_contiguous(), "reshape of a non-contiguous tensor");
  Tensor t(data, dtype, dims, device);
  QJ_CHECK(t.numel() == numel(),
           "reshape " + shape_string() + " to " + t.shape_string() + " changes the element count");
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  QJ_CHECK(ndim >= 1 && 0 <= begin && begin <= end && end <= shape[0],
           "row slice [" + std::to_string(begin) + ", " + std::to_string(end) + ") out of " +
               shape_string());
  Tensor t = *this;
  t.shape[0] = end - begin;
  t.data = static_cast<char*>(data) + size_t(begin * stride[0]) * dtype_size(dtype);
  return t;
}

std::string Tensor::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace qj
