#pragma once
// The element types of the CUDA kernels. A tensor the precision contract lets
// be bf16 (include/qianjun/backend.h, "Precision") is fp32 or bf16; a kernel
// reads it into fp32, computes in fp32 and rounds once when it stores, with
// the rounding of kernels/common/bf16.h (nearest even) so that the CUDA kernels
// and the CPU reference round every value the same way.
//
// Kernels are templates on their element types; the host launchers pick the
// instantiation from the tensors' dtypes with dispatch_floats. Short per-column
// vectors (norm weights and their gradients) are read through FloatVec, whose
// dtype is a run-time flag: a uniform branch costs nothing there and spares a
// template parameter per vector.
#include <cuda_bf16.h>

#include <cstdint>
#include <string>
#include <tuple>

#include "kernels/common/bf16.h"
#include "qianjun/error.h"
#include "qianjun/tensor.h"

namespace qj::cuda {

using bf16 = __nv_bfloat16;

// ---- one element ----

__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(bf16 v) {
  return kernels::bf16_to_float(__bfloat16_as_ushort(v));
}

template <class T>
__device__ T from_float(float v);
template <>
__device__ inline float from_float<float>(float v) { return v; }
template <>
__device__ inline bf16 from_float<bf16>(float v) {
  return __ushort_as_bfloat16(kernels::float_to_bf16(v));
}

template <class T>
__device__ float load(const T* p) { return to_float(*p); }
template <class T>
__device__ void store(T* p, float v) { *p = from_float<T>(v); }

// ---- packs: 8 elements moved with 16-byte loads and stores ----
// 8 bf16 are one 16-byte access, 8 fp32 two. The caller guarantees 16-byte
// alignment (all_aligned16 on the host, pack starts at multiples of kPack).

inline constexpr int kPack = 8;
using Pack = float[kPack];

__device__ inline void load_pack(const float* p, Pack& v) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// Little-endian: the element at the lower address is the low half of a word.
__device__ inline void load_pack(const bf16* p, Pack& v) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t words[4] = {u.x, u.y, u.z, u.w};
  for (int k = 0; k < 4; ++k) {
    v[2 * k] = __uint_as_float(words[k] << 16);
    v[2 * k + 1] = __uint_as_float(words[k] & 0xffff0000u);
  }
}

__device__ inline void store_pack(float* p, const Pack& v) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ inline void store_pack(bf16* p, const Pack& v) {
  uint32_t words[4];
  for (int k = 0; k < 4; ++k)
    words[k] = uint32_t(kernels::float_to_bf16(v[2 * k])) |
               (uint32_t(kernels::float_to_bf16(v[2 * k + 1])) << 16);
  *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
}

// Grid-stride over [0, n): pack(i) for i = 0, 8, 16, .. while a whole pack
// fits (only when `vectorized`), then one(i) for each remaining element.
template <class PackFn, class OneFn>
__device__ void for_each_pack(int64_t n, bool vectorized, PackFn pack, OneFn one) {
  const int64_t thread = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t threads = int64_t(gridDim.x) * blockDim.x;
  int64_t done = 0;
  if (vectorized) {
    const int64_t packs = n / kPack;
    for (int64_t p = thread; p < packs; p += threads) pack(p * kPack);
    done = packs * kPack;
  }
  for (int64_t i = done + thread; i < n; i += threads) one(i);
}

// Threads a for_each_pack loop wants: one per pack, or one per element.
inline int64_t pack_work(int64_t n, bool vectorized) {
  return vectorized ? (n + kPack - 1) / kPack : n;
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class... Ptrs>
bool all_aligned16(const Ptrs*... ptrs) {
  return (aligned16(ptrs) && ...);
}

// ---- a vector whose dtype is known at run time ----

struct FloatVec {
  void* data = nullptr;
  bool is_bf16 = false;

  __host__ __device__ bool defined() const { return data != nullptr; }
  __device__ float load(int64_t i) const {
    return is_bf16 ? to_float(static_cast<const bf16*>(data)[i])
                   : static_cast<const float*>(data)[i];
  }
  __device__ void store(int64_t i, float v) const {
    if (is_bf16)
      static_cast<bf16*>(data)[i] = from_float<bf16>(v);
    else
      static_cast<float*>(data)[i] = v;
  }
};

// An undefined tensor gives an undefined FloatVec. The dtype was checked before.
inline FloatVec float_vec(const Tensor& t) { return {t.data, t.dtype == DType::BF16}; }

// ---- host: from tensors' dtypes to template arguments ----

template <class T>
struct Elem {
  using type = T;
};
template <class Tag>
using elem_t = typename Tag::type;

template <class T>
T* data_as(const Tensor& t) { return static_cast<T*>(t.data); }

namespace detail {

template <class F, class... Tags>
void dispatch_floats(const char* op, F& f, std::tuple<Tags...>) {
  f(Tags{}...);
}

template <class F, class... Tags, class... Rest>
void dispatch_floats(const char* op, F& f, std::tuple<Tags...>, const Tensor& t,
                     const Rest&... rest) {
  if (t.dtype == DType::BF16) {
    dispatch_floats(op, f, std::tuple<Tags..., Elem<bf16>>{}, rest...);
  } else {
    // An undefined optional tensor (data null) takes the fp32 instantiation.
    QJ_CHECK(t.dtype == DType::F32 || !t.defined(),
             std::string(op) + ": the CUDA kernel reads fp32 or bf16, got " +
                 dtype_name(t.dtype));
    dispatch_floats(op, f, std::tuple<Tags..., Elem<float>>{}, rest...);
  }
}

}  // namespace detail

// Calls f(Elem<T0>{}, Elem<T1>{}, ..) where Ti is float or bf16, the element
// type of tensors[i]; the op's argument checks have already named any tensor
// of another dtype, so the error here is a backstop.
template <class F, class... Ts>
void dispatch_floats(const char* op, F&& f, const Ts&... tensors) {
  detail::dispatch_floats(op, f, std::tuple<>{}, tensors...);
}

}  // namespace qj::cuda
