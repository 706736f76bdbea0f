// copy: dst = src converted to dst's dtype (fp32 <-> bf16, or the same dtype).
// The same dtype is a device-to-device memcpy; a conversion is a kernel that
// rounds fp32 to bf16 to nearest even (widening bf16 to fp32 is exact).
#include "kernels/common/copy_args.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/kernels.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/tensor_args.h"

namespace qj::cuda {
namespace {

template <class S, class D>
__global__ void convert_kernel(const S* src, D* dst, int64_t n, bool vectorized) {
  for_each_pack(
      n, vectorized,
      [=](int64_t i) {
        Pack v;
        load_pack(src + i, v);
        store_pack(dst + i, v);
      },
      [=](int64_t i) { store(dst + i, load(src + i)); });
}

}  // namespace

void copy(void* ctx, const Tensor& src, const Tensor& dst) {
  kernels::check_copy_args(kDevice, src, dst);
  const int64_t n = src.numel();
  if (n == 0) return;
  CudaContext& c = context(ctx);
  if (src.dtype == dst.dtype) {
    QJ_CUDA_CHECK(
        cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDeviceToDevice, c.stream));
    return;
  }
  const bool vec = all_aligned16(src.data, dst.data);
  dispatch_floats(
      "copy",
      [&](auto st, auto dt) {
        using S = elem_t<decltype(st)>;
        using D = elem_t<decltype(dt)>;
        convert_kernel<S, D><<<grid_for(pack_work(n, vec)), kThreads, 0, c.stream>>>(
            data_as<const S>(src), data_as<D>(dst), n, vec);
      },
      src, dst);
  QJ_CUDA_CHECK_LAUNCH("convert_kernel");
}

}  // namespace qj::cuda
