#include "backends/cuda/cuda_context.h"

#include <memory>
#include <string>

#include "backends/cuda/cuda_backend.h"
#include "kernels/cuda/check.h"
#include "qianjun/error.h"

namespace qj::cuda {

// Dense (no sparsity) bf16 tensor-core peaks with fp32 accumulation, from the
// vendor data sheets. Unknown parts get an estimate from the SM count and clock
// at Ampere's 1024 dense bf16 FMA per SM per clock.
double peak_bf16_flops(const cudaDeviceProp& prop, int device) {
  const int cc = prop.major * 10 + prop.minor;
  const int sms = prop.multiProcessorCount;
  switch (cc) {
    case 90: return sms <= 114 ? 756e12 : 989e12;  // H100 PCIe : H100 SXM / H200
    case 80: return 312e12;                        // A100
    case 100: return 2250e12;                      // B200
    case 89: return 362e12;                        // L40S
    case 86: return 125e12;                        // A10 class
    default: break;
  }
  int clock_khz = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device) != cudaSuccess) {
    cudaGetLastError();
    clock_khz = 1'500'000;
  }
  return double(sms) * double(clock_khz) * 1e3 * 2048.0;
}

CudaContext* create_context(int device) {
  std::string why;
  const int count = cuda_device_count(&why);
  QJ_CHECK(count > 0, "backend 'cuda': no CUDA device can be used (" + why + ")");
  QJ_CHECK(device >= 0 && device < count,
           "backend 'cuda': device " + std::to_string(device) + " does not exist (" +
               std::to_string(count) + " visible)");
  auto c = std::make_unique<CudaContext>();
  c->device = device;
  QJ_CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  QJ_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  c->peak_flops = peak_bf16_flops(prop, device);
  QJ_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  QJ_CUBLAS_CHECK(cublasLtCreate(&c->lt));
  void* workspace = nullptr;
  QJ_CUDA_CHECK(cudaMalloc(&workspace, kGemmWorkspaceBytes + kScratchBytes));
  c->gemm_workspace = workspace;
  c->gemm_workspace_bytes = kGemmWorkspaceBytes;
  c->scratch = static_cast<char*>(workspace) + kGemmWorkspaceBytes;
  c->scratch_bytes = kScratchBytes;
  return c.release();
}

}  // namespace qj::cuda
