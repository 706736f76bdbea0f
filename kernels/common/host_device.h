#pragma once
// QJ_HOST_DEVICE marks small inline functions that both backends' kernels call
// (index arithmetic): __host__ __device__ under nvcc, nothing for a plain C++
// compiler.
#if defined(__CUDACC__)
#define QJ_HOST_DEVICE __host__ __device__
#else
#define QJ_HOST_DEVICE
#endif
