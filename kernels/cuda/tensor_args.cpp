#include "kernels/cuda/tensor_args.h"

#include <string>

namespace qj::cuda {
namespace {

std::string where(const char* op, const char* arg) {
  return std::string(op) + ": argument '" + arg + "'";
}

void check_device_tensor(const Tensor& t, DType dtype, const char* op, const char* arg) {
  QJ_CHECK(t.defined(), where(op, arg) + " is undefined (null data)");
  QJ_CHECK(t.dtype == dtype, where(op, arg) + " must be " + dtype_name(dtype) + ", got " +
                                 dtype_name(t.dtype));
  QJ_CHECK(t.device == Device::Cuda,
           where(op, arg) + " is not CUDA memory: the cuda backend cannot read it");
  QJ_CHECK(t.is_contiguous(), where(op, arg) + " " + t.shape_string() + " is not contiguous");
}

}  // namespace

float* f32_arg(const Tensor& t, const char* op, const char* arg) {
  check_device_tensor(t, DType::F32, op, arg);
  return static_cast<float*>(t.data);
}

const int32_t* i32_arg(const Tensor& t, const char* op, const char* arg) {
  check_device_tensor(t, DType::I32, op, arg);
  return static_cast<const int32_t*>(t.data);
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op, const char* arg_a,
                      const char* arg_b) {
  bool same = a.ndim == b.ndim;
  for (int i = 0; same && i < a.ndim; ++i) same = a.shape[i] == b.shape[i];
  QJ_CHECK(same, std::string(op) + ": '" + arg_a + "' " + a.shape_string() + " and '" + arg_b +
                     "' " + b.shape_string() + " must have the same shape");
}

void check_vector(const Tensor& t, int64_t n, const char* op, const char* arg) {
  QJ_CHECK(t.ndim == 1 && t.shape[0] == n,
           where(op, arg) + " must have shape [" + std::to_string(n) + "], got " +
               t.shape_string());
}

RowView as_rows(const Tensor& t) {
  if (t.ndim == 0) return {0, 0};
  const int64_t cols = t.shape[t.ndim - 1];
  return {cols == 0 ? 0 : t.numel() / cols, cols};
}

}  // namespace qj::cuda
