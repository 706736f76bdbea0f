#include "comm/mpi/mpi_support.h"

#include <climits>

#include "comm/comm_checks.h"

namespace qj {

MPI_Datatype mpi_datatype(DType dtype) {
  switch (dtype) {
    case DType::F32: return MPI_FLOAT;
    case DType::I32: return MPI_INT32_T;
    case DType::U16: return MPI_UINT16_T;
    case DType::BF16: return MPI_UINT16_T;  // moved bit for bit, never reduced
  }
  throw Error("mpi_datatype: unknown dtype");
}

MPI_Op mpi_reduce_op(const Communicator& comm, const char* what, ReduceOp op, DType dtype) {
  if (dtype == DType::BF16)
    throw Error(comm_context(comm, what) + ": the MPI communicator cannot reduce bf16 tensors "
                          "(reduce in fp32, or move bf16 with all_gather/broadcast/send)");
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
