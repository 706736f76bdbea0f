// The CUDA backend: its op table points at the kernels in kernels/cuda, and
// its context (device, stream, cuBLASLt handle, workspace) is created once.
#include "backends/cuda/cuda_backend.h"

#include <string>

#include "backends/cuda/cuda_context.h"
#include "core/local_rank.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/kernels.cuh"

namespace qj {
namespace {

int device_index(void* ctx) { return cuda::context(ctx).device; }
void* stream(void* ctx) { return cuda::context(ctx).stream; }

// The GPU of this rank: local rank modulo the visible devices. Without a
// device, 0, for create_context to refuse with the driver's reason.
int rank_device() {
  const int count = cuda_device_count();
  return count > 0 ? local_rank_device(count) : 0;
}

const BackendOps kCudaOps = {
    .alloc = cuda::alloc,
    .free = cuda::free,
    .copy_to_device = cuda::copy_to_device,
    .copy_to_host = cuda::copy_to_host,
    .synchronize = cuda::synchronize,
    .peak_flops = cuda::peak_flops,
    .available_memory = cuda::available_memory,
    .device_index = device_index,
    .stream = stream,
    .fill = cuda::fill,
    .add = cuda::add,
    .scale = cuda::scale,
    .copy = cuda::copy,
    .matmul = cuda::matmul,
    .add_bias = cuda::add_bias,
    .bias_backward = cuda::bias_backward,
    .layernorm_forward = cuda::layernorm_forward,
    .layernorm_backward = cuda::layernorm_backward,
    .rmsnorm_forward = cuda::rmsnorm_forward,
    .rmsnorm_backward = cuda::rmsnorm_backward,
    .gelu_forward = cuda::gelu_forward,
    .gelu_backward = cuda::gelu_backward,
    .swiglu_forward = cuda::swiglu_forward,
    .swiglu_backward = cuda::swiglu_backward,
    .rope_tables = cuda::rope_tables,
    .rope_forward = cuda::rope_forward,
    .rope_backward = cuda::rope_backward,
    .attention_forward = cuda::attention_forward,
    .attention_backward = cuda::attention_backward,
    .embedding_forward = cuda::embedding_forward,
    .embedding_backward = cuda::embedding_backward,
    .cross_entropy_stats = cuda::cross_entropy_stats,
    .cross_entropy_backward = cuda::cross_entropy_backward,
    .sum_squares = cuda::sum_squares,
    .adamw_update = cuda::adamw_update,
    // Mixture of experts: left null until a GPU session writes and verifies them.
    .gather_rows = nullptr,
    .combine_rows = nullptr,
    .row_dot = nullptr,
    .grouped_matmul = nullptr,
    .grouped_matmul_wgrad = nullptr,
};

}  // namespace

int cuda_device_count(std::string* why) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(error) + " (" +
                    cudaGetErrorName(error) + ")";
    return 0;
  }
  if (count == 0 && why) *why = "cudaGetDeviceCount reports 0 devices";
  return count;
}

Backend& cuda_backend() {
  // Created once, thread-safely, on first use, and deliberately never destroyed:
  // at process exit the CUDA runtime may be unloaded before static destructors run.
  static cuda::CudaContext* context = cuda::create_context(rank_device());
  static Backend backend("cuda", Device::Cuda, &kCudaOps, context);
  return backend;
}

}  // namespace qj
