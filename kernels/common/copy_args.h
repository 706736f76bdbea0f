#pragma once
// The argument contract of the copy op (include/qianjun/backend.h), checked
// once for every backend.
#include <string>
#include <utility>

#include "kernels/common/tensor_args.h"

namespace qj::kernels {

inline bool is_float_dtype(DType t) { return t == DType::F32 || t == DType::BF16; }

// src and dst: contiguous, in `device` memory, the same element count, and
// either the same dtype or fp32 and bf16 (either way).
inline void check_copy_args(Device device, const Tensor& src, const Tensor& dst) {
  for (const auto& [t, arg] : {std::pair{&src, "src"}, std::pair{&dst, "dst"}}) {
    QJ_CHECK(t->defined(), arg_where("copy", arg) + " is undefined (null data)");
    QJ_CHECK(t->device == device, arg_where("copy", arg) + " is not " + memory_name(device) +
                                      " memory: the " + backend_name(device) +
                                      " backend cannot read it");
    QJ_CHECK(t->is_contiguous(), arg_where("copy", arg) + " " + t->shape_string() +
                                     " is not contiguous");
  }
  QJ_CHECK(src.numel() == dst.numel(), "copy: 'src' " + src.shape_string() + " and 'dst' " +
                                           dst.shape_string() + " differ in element count");
  QJ_CHECK(src.dtype == dst.dtype || (is_float_dtype(src.dtype) && is_float_dtype(dst.dtype)),
           std::string("copy: cannot convert ") + dtype_name(src.dtype) + " to " +
               dtype_name(dst.dtype) + " (only fp32 <-> bf16 convert)");
}

}  // namespace qj::kernels
