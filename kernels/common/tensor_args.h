#pragma once
// Argument checks shared by every backend's ops (host side, plain C++17 so that
// nvcc can compile it too): an op validates what it is given before it reads
// anything, and its errors name the op, the argument and the shapes involved.
// A backend passes the Device whose memory its kernels read; everything else
// is the same for every backend. Header-only: the CUDA library links nothing
// but qj_core.
#include <cstdint>
#include <string>

#include "qianjun/tensor.h"

namespace qj::kernels {

inline std::string arg_where(const char* op, const char* arg) {
  return std::string(op) + ": argument '" + arg + "'";
}

// How errors name a device's memory and the backend that reads it.
inline const char* memory_name(Device device) {
  switch (device) {
    case Device::Host: return "host";
    case Device::Cuda: return "CUDA";
    case Device::Plugin: return "plugin";
  }
  return "?";
}
inline const char* backend_name(Device device) {
  switch (device) {
    case Device::Host: return "cpu";
    case Device::Cuda: return "cuda";
    case Device::Plugin: return "plugin";
  }
  return "?";
}

// Throws unless `t` is defined, of `dtype`, in `device` memory and contiguous.
inline void check_tensor(const Tensor& t, DType dtype, Device device, const char* op,
                         const char* arg) {
  QJ_CHECK(t.defined(), arg_where(op, arg) + " is undefined (null data)");
  QJ_CHECK(t.dtype == dtype, arg_where(op, arg) + " must be " + dtype_name(dtype) + ", got " +
                                 dtype_name(t.dtype));
  QJ_CHECK(t.device == device, arg_where(op, arg) + " is not " + memory_name(device) +
                                   " memory: the " + backend_name(device) +
                                   " backend cannot read it");
  QJ_CHECK(t.is_contiguous(),
           arg_where(op, arg) + " " + t.shape_string() + " is not contiguous");
}

// The data of a checked fp32 (int32) tensor.
inline float* f32_arg(const Tensor& t, Device device, const char* op, const char* arg) {
  check_tensor(t, DType::F32, device, op, arg);
  return static_cast<float*>(t.data);
}
inline const int32_t* i32_arg(const Tensor& t, Device device, const char* op, const char* arg) {
  check_tensor(t, DType::I32, device, op, arg);
  return static_cast<const int32_t*>(t.data);
}

// Throws unless `a` and `b` have identical shapes.
inline void check_same_shape(const Tensor& a, const Tensor& b, const char* op, const char* arg_a,
                             const char* arg_b) {
  bool same = a.ndim == b.ndim;
  for (int i = 0; same && i < a.ndim; ++i) same = a.shape[i] == b.shape[i];
  QJ_CHECK(same, std::string(op) + ": '" + arg_a + "' " + a.shape_string() + " and '" + arg_b +
                     "' " + b.shape_string() + " must have the same shape");
}

// Throws unless `t` is 1-D with `n` elements.
inline void check_vector(const Tensor& t, int64_t n, const char* op, const char* arg) {
  QJ_CHECK(t.ndim == 1 && t.shape[0] == n, arg_where(op, arg) + " must have shape [" +
                                               std::to_string(n) + "], got " +
                                               t.shape_string());
}

// A tensor seen as a matrix: the last dimension is a row, the others count rows.
struct RowView {
  int64_t rows;
  int64_t cols;
};
inline RowView as_rows(const Tensor& t) {
  if (t.ndim == 0) return {0, 0};
  const int64_t cols = t.shape[t.ndim - 1];
  return {cols == 0 ? 0 : t.numel() / cols, cols};
}

}  // namespace qj::kernels
