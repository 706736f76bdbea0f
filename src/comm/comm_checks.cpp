#include "comm/comm_checks.h"

namespace qj {

std::string comm_context(const Communicator& comm, const char* op) {
  return std::string(op) + " on '" + comm.name() + "' (rank " + std::to_string(comm.rank()) +
         " of " + std::to_string(comm.size()) + ")";
}

const char* device_name(Device device) {
  switch (device) {
    case Device::Host: return "host";
    case Device::Cuda: return "cuda";
    case Device::Plugin: return "plugin";
  }
  return "?";
}

void check_buffer(const Communicator& comm, const char* op, const Tensor& t, const char* role) {
  if (!t.is_contiguous())
    throw Error(comm_context(comm, op) + ": tensor '" + role + "' " + t.shape_string() +
                " is not contiguous");
  if (t.numel() > 0 && !t.defined())
    throw Error(comm_context(comm, op) + ": tensor '" + role + "' " + t.shape_string() +
                " has no memory");
}

void check_host(const Communicator& comm, const char* op, const Tensor& t, const char* role) {
  if (t.device != Device::Host)
    throw Error(comm_context(comm, op) + ": tensor '" + role + "' is in " + device_name(t.device) +
                " memory, but this communicator needs host memory (staging device buffers "
                "through the host is not implemented yet)");
}

void check_same_dtype(const Communicator& comm, const char* op, const Tensor& in, const Tensor& out) {
  if (in.dtype != out.dtype)
    throw Error(comm_context(comm, op) + ": 'in' is " + dtype_name(in.dtype) + " but 'out' is " +
                dtype_name(out.dtype));
}

void check_reduce_scatter_sizes(const Communicator& comm, const char* op, const Tensor& in,
                                const Tensor& out) {
  if (in.numel() != int64_t(comm.size()) * out.numel())
    throw Error(comm_context(comm, op) + ": 'in' " + in.shape_string() + " has " +
                std::to_string(in.numel()) + " elements, expected size() * out.numel() = " +
                std::to_string(comm.size()) + " * " + std::to_string(out.numel()));
}

void check_all_gather_sizes(const Communicator& comm, const char* op, const Tensor& in,
                            const Tensor& out) {
  if (out.numel() != int64_t(comm.size()) * in.numel())
    throw Error(comm_context(comm, op) + ": 'out' " + out.shape_string() + " has " +
                std::to_string(out.numel()) + " elements, expected size() * in.numel() = " +
                std::to_string(comm.size()) + " * " + std::to_string(in.numel()));
}

namespace {

bool overlaps(const Tensor& a, const Tensor& b) {
  auto* a0 = static_cast<const char*>(a.data);
  auto* b0 = static_cast<const char*>(b.data);
  return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

}  // namespace

bool reduce_scatter_in_place(const Communicator& comm, const char* op, const Tensor& in,
                             const Tensor& out) {
  if (in.data == out.data && out.numel() > 0) return true;
  if (overlaps(in, out))
    throw Error(comm_context(comm, op) +
                ": 'out' overlaps 'in' without starting at it; pass out = the first block of in "
                "for an in-place call, or separate buffers");
  return false;
}

bool all_gather_in_place(const Communicator& comm, const char* op, const Tensor& in,
                         const Tensor& out) {
  const char* own_block = static_cast<const char*>(out.data) + comm.rank() * in.nbytes();
  if (in.data == own_block && in.numel() > 0) return true;
  if (overlaps(in, out))
    throw Error(comm_context(comm, op) +
                ": 'in' overlaps 'out' but is not this rank's block of it; pass in = block rank() "
                "of out for an in-place call, or separate buffers");
  return false;
}

void check_rank_arg(const Communicator& comm, const char* op, const char* what, int rank) {
  if (rank < 0 || rank >= comm.size())
    throw Error(comm_context(comm, op) + ": " + what + " " + std::to_string(rank) +
                " is not a rank of the group (0.." + std::to_string(comm.size() - 1) + ")");
}

void check_tag(const Communicator& comm, const char* op, int tag) {
  if (tag < 0) throw Error(comm_context(comm, op) + ": tag " + std::to_string(tag) + " is negative");
}

}  // namespace qj
