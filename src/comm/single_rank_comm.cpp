// The communicator of a group with one rank: reductions and broadcasts leave
// the buffer as it is, reduce_scatter, all_gather and all_to_all copy, and
// point to point has no peer. Arguments are checked as the MPI communicator checks them, so a
// wrong call fails on one rank as it would on many (except that a no-op never
// looks at the memory: device buffers and bf16 reductions are fine there).
#include <cstring>

#include "comm/comm_checks.h"
#include "qianjun/comm.h"

namespace qj {

namespace {

class SingleRankCommunicator final : public Communicator {
 public:
  explicit SingleRankCommunicator(std::string name) : name_(std::move(name)) {}

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }

  void all_reduce(const Tensor& x, ReduceOp) override { check_buffer(*this, "all_reduce", x, "x"); }
  CommHandle all_reduce_async(const Tensor& x, ReduceOp) override {
    check_buffer(*this, "all_reduce_async", x, "x");
    return CommHandle();  // complete
  }

  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp) override {
    reduce_scatter_copy(in, out, "reduce_scatter");
  }
  CommHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp) override {
    reduce_scatter_copy(in, out, "reduce_scatter_async");
    return CommHandle();
  }

  void all_gather(const Tensor& in, const Tensor& out) override {
    all_gather_copy(in, out, "all_gather");
  }
  CommHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    all_gather_copy(in, out, "all_gather_async");
    return CommHandle();
  }

  // The one block this rank sends itself.
  void all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                  const std::vector<int64_t>& send_offsets, const Tensor& out,
                  const std::vector<int64_t>& recv_counts,
                  const std::vector<int64_t>& recv_offsets) override {
    const char* op = "all_to_all";
    check_host(*this, op, in, "in");
    check_host(*this, op, out, "out");
    check_all_to_all(*this, op, in, send_counts, send_offsets, out, recv_counts, recv_offsets);
    if (recv_counts[0] != send_counts[0])
      throw Error(comm_context(*this, op) + ": recv_counts[0] = " + std::to_string(recv_counts[0]) +
                  " but this rank sends itself send_counts[0] = " + std::to_string(send_counts[0]) +
                  " rows");
    const size_t row_bytes = size_t(row_elements(in)) * dtype_size(in.dtype);
    if (send_counts[0] > 0 && row_bytes > 0)
      std::memcpy(static_cast<char*>(out.data) + size_t(recv_offsets[0]) * row_bytes,
                  static_cast<const char*>(in.data) + size_t(send_offsets[0]) * row_bytes,
                  size_t(send_counts[0]) * row_bytes);
  }

  void broadcast(const Tensor& x, int root) override {
    check_buffer(*this, "broadcast", x, "x");
    check_rank_arg(*this, "broadcast", "root", root);
  }
  void barrier() override {}

  void send(const Tensor&, int peer, int) override { no_peer("send", peer); }
  void recv(const Tensor&, int peer, int) override { no_peer("recv", peer); }
  CommHandle send_async(const Tensor&, int peer, int) override { no_peer("send_async", peer); }
  CommHandle recv_async(const Tensor&, int peer, int) override { no_peer("recv_async", peer); }

  std::unique_ptr<Communicator> split(int, int, const std::string& name) const override {
    return make_single_rank_communicator(name);
  }

 private:
  void reduce_scatter_copy(const Tensor& in, const Tensor& out, const char* op) const {
    check_copy(in, out, op);
    check_reduce_scatter_sizes(*this, op, in, out);
    reduce_scatter_in_place(*this, op, in, out);
    copy(in, out);
  }
  void all_gather_copy(const Tensor& in, const Tensor& out, const char* op) const {
    check_copy(in, out, op);
    check_all_gather_sizes(*this, op, in, out);
    all_gather_in_place(*this, op, in, out);
    copy(in, out);
  }
  void check_copy(const Tensor& in, const Tensor& out, const char* op) const {
    check_host(*this, op, in, "in");
    check_buffer(*this, op, in, "in");
    check_host(*this, op, out, "out");
    check_buffer(*this, op, out, "out");
    check_same_dtype(*this, op, in, out);
  }
  // With one rank both in-place forms have `in` == `out`: nothing to copy.
  static void copy(const Tensor& in, const Tensor& out) {
    if (in.nbytes() > 0 && in.data != out.data) std::memcpy(out.data, in.data, in.nbytes());
  }
  [[noreturn]] void no_peer(const char* op, int peer) const {
    throw Error(comm_context(*this, op) + ": the group has one rank, so there is no peer " +
                std::to_string(peer) + " to exchange with");
  }

  std::string name_;
};

}  // namespace

std::unique_ptr<Communicator> make_single_rank_communicator(const std::string& name) {
  return std::make_unique<SingleRankCommunicator>(name);
}

}  // namespace qj
