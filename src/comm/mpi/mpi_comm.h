#pragma once
// The MPI implementation of the Communicator interface, for host buffers.
// Every MPI call is checked: the communicator uses MPI_ERRORS_RETURN, and a
// failure throws qj::Error naming the operation, the communicator, the rank and
// MPI's own description of the error.
#include <mpi.h>

#include <string>

#include "qianjun/comm.h"

namespace qj {

class MpiCommunicator final : public Communicator {
 public:
  // Wraps `comm` and owns it (frees it on destruction), unless it is
  // MPI_COMM_WORLD or MPI_COMM_SELF. MPI must be initialised.
  MpiCommunicator(MPI_Comm comm, std::string name);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  MPI_Comm handle() const { return comm_; }

  void all_reduce(const Tensor& x, ReduceOp op) override;
  CommHandle all_reduce_async(const Tensor& x, ReduceOp op) override;
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override;
  CommHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override;
  void all_gather(const Tensor& in, const Tensor& out) override;
  CommHandle all_gather_async(const Tensor& in, const Tensor& out) override;
  void broadcast(const Tensor& x, int root) override;
  void all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                  const std::vector<int64_t>& send_offsets, const Tensor& out,
                  const std::vector<int64_t>& recv_counts,
                  const std::vector<int64_t>& recv_offsets) override;
  void send(const Tensor& x, int peer, int tag) override;
  void recv(const Tensor& x, int peer, int tag) override;
  CommHandle send_async(const Tensor& x, int peer, int tag) override;
  CommHandle recv_async(const Tensor& x, int peer, int tag) override;
  void barrier() override;

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) const override;

 private:
  // Throws qj::Error naming `op` when `rc` is not MPI_SUCCESS.
  void check(int rc, const char* op) const;
  // A started non-blocking call as a handle; `op` names it in errors.
  CommHandle handle_for(MPI_Request request, const char* op, int64_t recv_count = -1,
                        MPI_Datatype recv_type = MPI_DATATYPE_NULL) const;
  CommHandle start_recv(const Tensor& x, int peer, int tag, const char* op);

  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0;
  int size_ = 1;
  std::string name_;
};

}  // namespace qj
