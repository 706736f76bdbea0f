#pragma once
// A non-owning view of memory: pointer, dtype, device, shape and strides.
// Memory is owned by arenas (see src/core/memory_plan.h); a Tensor never frees.
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "qianjun/error.h"

namespace qj {

enum class DType : uint8_t { F32, BF16, I32, U16 };
enum class Device : uint8_t { Host, Cuda, Plugin };

size_t dtype_size(DType t);
const char* dtype_name(DType t);

struct Tensor {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::Host;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  std::array<int64_t, kMaxDims> stride{};  // in elements

  Tensor() = default;
  Tensor(void* data, DType dtype, std::initializer_list<int64_t> dims,
         Device device = Device::Host);
  // The same from a shape held at run time (1 to kMaxDims dimensions).
  Tensor(void* data, DType dtype, const std::vector<int64_t>& dims, Device device = Device::Host);

  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  bool is_contiguous() const;
  bool defined() const { return data != nullptr; }

  float* f32() const;
  int32_t* i32() const;

  // Same memory, new shape with the same element count (contiguous only).
  Tensor reshape(std::initializer_list<int64_t> dims) const;
  // Rows [begin, end) of the first dimension.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  std::string shape_string() const;
};

}  // namespace qj
