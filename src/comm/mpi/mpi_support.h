#pragma once
// Pieces of the MPI communicator that are not collectives: dtype and op
// mapping, error text, and the request behind an asynchronous CommHandle.
#include <mpi.h>

#include <string>

#include "qianjun/comm.h"

namespace qj {

// The MPI datatype that moves elements of `dtype`. bf16 moves as 16-bit words.
MPI_Datatype mpi_datatype(DType dtype);
// The MPI reduction for `op` on `dtype`; throws for dtypes MPI cannot reduce
// (bf16), naming the call `what` of `comm`.
MPI_Op mpi_reduce_op(const Communicator& comm, const char* what, ReduceOp op, DType dtype);
// An element count as MPI's int; throws when it does not fit.
int mpi_count(const Communicator& comm, const char* what, int64_t n);

// Throws qj::Error "MPI <context> failed: <MPI_Error_string>" unless rc is MPI_SUCCESS.
void check_mpi(int rc, const std::string& context);

// One outstanding non-blocking MPI call. A receive also checks, on completion,
// that the message had exactly the expected number of elements.
class MpiRequest final : public CommRequest {
 public:
  MpiRequest(MPI_Request request, std::string context, int64_t recv_count,
             MPI_Datatype recv_type);
  ~MpiRequest() override;
  void wait() override;
  bool test() override;

 private:
  void finish(const MPI_Status& status);

  MPI_Request request_;
  std::string context_;
  int64_t recv_count_;  // -1: not a receive
  MPI_Datatype recv_type_;
};

}  // namespace qj
