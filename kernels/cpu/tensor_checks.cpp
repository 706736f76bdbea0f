#include "kernels/cpu/tensor_checks.h"

#include <string>

namespace qj::cpu {

static std::string where(const char* op, const char* arg) {
  return std::string(op) + ": argument '" + arg + "'";
}

float* f32_arg(const Tensor& t, const char* op, const char* arg) {
  QJ_CHECK(t.defined(), where(op, arg) + " is undefined (null data)");
  QJ_CHECK(t.dtype == DType::F32,
           where(op, arg) + " must be fp32, got " + dtype_name(t.dtype));
  QJ_CHECK(t.device == Device::Host,
           where(op, arg) + " is not host memory: the cpu backend cannot read it");
  QJ_CHECK(t.is_contiguous(), where(op, arg) + " " + t.shape_string() + " is not contiguous");
  return static_cast<float*>(t.data);
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
  int64_t cols = t.shape[t.ndim - 1];
  return {cols == 0 ? 0 : t.numel() / cols, cols};
}

}  // namespace qj::cpu
