#include "comm/mpi/mpi_support.h"

#include <climits>
#include <cstdint>

#include "comm/comm_checks.h"
#include "kernels/common/bf16.h"

namespace qj {

MPI_Datatype mpi_datatype(DType dtype) {
  switch (dtype) {
    case DType::F32: return MPI_FLOAT;
    case DType::I32: return MPI_INT32_T;
    case DType::U16: return MPI_UINT16_T;
    case DType::BF16: return MPI_UINT16_T;  // moved bit for bit; reduced by the ops below
  }
  throw Error("mpi_datatype: unknown dtype");
}

namespace {

// MPI has no bf16: these user operations combine two bf16 values in fp32 and
// round the result once, as a bf16 NCCL reduction does at each step.
template <class Combine>
void combine_bf16(void* in, void* inout, int* len, Combine combine) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i)
    b[i] = kernels::float_to_bf16(combine(kernels::bf16_to_float(a[i]), kernels::bf16_to_float(b[i])));
}

void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  combine_bf16(in, inout, len, [](float x, float y) { return x + y; });
}

void bf16_max(void* in, void* inout, int* len, MPI_Datatype*) {
  combine_bf16(in, inout, len, [](float x, float y) { return x > y ? x : y; });
}

MPI_Op create_op(MPI_User_function* function) {
  MPI_Op op = MPI_OP_NULL;
  check_mpi(MPI_Op_create(function, /*commute=*/1, &op), "MPI_Op_create (bf16 reduction)");
  return op;
}

}  // namespace

MPI_Op mpi_reduce_op(const Communicator& /*comm*/, const char* /*what*/, ReduceOp op, DType dtype) {
  if (dtype == DType::BF16) {
    // Created on first use, after MPI_Init; MPI_Finalize releases them.
    static const MPI_Op sum = create_op(bf16_sum), max = create_op(bf16_max);
    return op == ReduceOp::Sum ? sum : max;
  }
  return op == ReduceOp::Sum ? MPI_SUM : MPI_MAX;
}

int mpi_count(const Communicator& comm, const char* what, int64_t n) {
  if (n > INT_MAX)
    throw Error(comm_context(comm, what) + ": " + std::to_string(n) +
                " elements exceed MPI's count limit of 2^31-1; split the buffer");
  return int(n);
}

void check_mpi(int rc, const std::string& context) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) length = 0;
  std::string reason = length > 0 ? std::string(text, size_t(length))
                                  : "MPI error code " + std::to_string(rc);
  throw Error("MPI " + context + " failed: " + reason);
}

MpiRequest::MpiRequest(MPI_Request request, std::string context, int64_t recv_count,
                       MPI_Datatype recv_type)
    : request_(request), context_(std::move(context)), recv_count_(recv_count),
      recv_type_(recv_type) {}

MpiRequest::~MpiRequest() {
  // CommHandle waits before destroying its request; this only runs when a wait
  // threw. MPI may be gone already at process exit, then there is nothing to do.
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (request_ != MPI_REQUEST_NULL && !finalized) MPI_Wait(&request_, MPI_STATUS_IGNORE);
}

void MpiRequest::wait() {
  if (request_ == MPI_REQUEST_NULL) return;
  MPI_Status status;
  int rc = MPI_Wait(&request_, &status);
  if (rc != MPI_SUCCESS) request_ = MPI_REQUEST_NULL;  // never wait on it again
  check_mpi(rc, context_ + " (wait)");
  finish(status);
}

bool MpiRequest::test() {
  if (request_ == MPI_REQUEST_NULL) return true;
  int done = 0;
  MPI_Status status;
  int rc = MPI_Test(&request_, &done, &status);
  if (rc != MPI_SUCCESS) request_ = MPI_REQUEST_NULL;
  check_mpi(rc, context_ + " (test)");
  if (done) finish(status);
  return done != 0;
}

void MpiRequest::finish(const MPI_Status& status) {
  request_ = MPI_REQUEST_NULL;
  if (recv_count_ < 0) return;
  int count = 0;
  check_mpi(MPI_Get_count(&status, recv_type_, &count), context_ + " (get count)");
  if (count != recv_count_)
    throw Error(context_ + ": received " + std::to_string(count) + " elements from rank " +
                std::to_string(status.MPI_SOURCE) + " with tag " + std::to_string(status.MPI_TAG) +
                ", expected " + std::to_string(recv_count_));
}

}  // namespace qj
