#include "comm/nccl/nccl_comm.h"

#include <vector>

#include "comm/comm_checks.h"

namespace qj {

namespace {

// A lane over the same ranks as `parent`, in the same order, for one kind of message.
NcclLane duplicate_lane(const Communicator& owner, const NcclLane& parent, const char* op) {
  ncclComm_t child = nullptr;
  ncclConfig_t config = nccl_config();
  check_nccl(ncclCommSplit(parent.comm(), /*color=*/0, /*key=*/owner.rank(), &child, &config),
             owner, op, "ncclCommSplit", parent.comm());
  return NcclLane(child, owner, op);
}

// Frees device memory at scope exit.
struct DeviceScratch {
  void* ptr = nullptr;
  ~DeviceScratch() {
    if (ptr) cudaFree(ptr);
  }
};

}  // namespace

NcclCommunicator::NcclCommunicator(std::unique_ptr<Communicator> owned_host, Communicator& host,
                                   int device, cudaStream_t compute, ncclComm_t nccl)
    : owned_host_(std::move(owned_host)),
      host_(&host),
      device_(device),
      compute_(compute),
      events_(std::make_shared<EventPool>(device)),
      collective_(nccl, *this, "communicator set-up") {
  const char* op = "communicator set-up";
  int nccl_rank = -1, nccl_size = -1;
  check_nccl(ncclCommUserRank(nccl, &nccl_rank), *this, op, "ncclCommUserRank", nccl);
  check_nccl(ncclCommCount(nccl, &nccl_size), *this, op, "ncclCommCount", nccl);
  if (nccl_rank != rank() || nccl_size != size())
    throw Error(comm_context(*this, op) + ": the NCCL communicator has rank " +
                std::to_string(nccl_rank) + " of " + std::to_string(nccl_size) +
                ", unlike its host communicator");
  if (size() > 1) {
    for (NcclLane& lane : p2p_) lane = duplicate_lane(*this, collective_, op);
    connect_neighbours();
  }
}

// NCCL connects two ranks at their first send/recv on a communicator, and the
// host waits there until the peer reaches its own first one on it. A rank whose
// first message on lane A comes before its first on lane B, facing a peer that
// does the opposite, would hang. Pipelines talk to their ring neighbours: one
// byte each way on every lane, here, where every rank calls in the same order,
// connects them before any real message. Other pairs connect on first use.
void NcclCommunicator::connect_neighbours() {
  const char* op = "communicator set-up (connecting neighbours)";
  const int p = size(), r = rank();
  std::vector<int> neighbours{(r + 1) % p};
  if ((r + p - 1) % p != neighbours[0]) neighbours.push_back((r + p - 1) % p);  // not with two ranks
  DeviceScratch scratch;  // byte 0 is sent, byte 1 receives
  check_cuda(cudaMalloc(&scratch.ptr, 2), *this, op, "cudaMalloc");
  char* bytes = static_cast<char*>(scratch.ptr);
  for (size_t index = 0; index < p2p_.size(); ++index) {
    const NcclLane& lane = p2p_[index];
    const bool downward = index % 2 == 1;  // this lane carries messages to lower ranks
    check_nccl(ncclGroupStart(), *this, op, "ncclGroupStart", lane.comm());
    for (int peer : neighbours) {
      const bool sending = downward ? peer < r : peer > r;
      if (sending)
        check_nccl(ncclSend(bytes, 1, ncclUint8, peer, lane.comm(), lane.stream()), *this, op,
                   "ncclSend", lane.comm());
      else
        check_nccl(ncclRecv(bytes + 1, 1, ncclUint8, peer, lane.comm(), lane.stream()), *this, op,
                   "ncclRecv", lane.comm());
    }
    check_nccl(ncclGroupEnd(), *this, op, "ncclGroupEnd", lane.comm());
  }
  for (const NcclLane& lane : p2p_)
    check_cuda(cudaStreamSynchronize(lane.stream()), *this, op, "cudaStreamSynchronize");
}

void NcclCommunicator::use_device(const char* op) const {
  check_cuda(cudaSetDevice(device_), *this, op, "cudaSetDevice");
}

bool NcclCommunicator::on_host(const char* op, const Tensor& a, const char* a_role,
                               const Tensor* b, const char* b_role) const {
  const bool host = a.device == Device::Host;
  for (auto [t, role] : {std::pair{&a, a_role}, std::pair{b, b_role}}) {
    if (!t) continue;
    if (host ? t->device == Device::Host : t->device == Device::Cuda) continue;
    throw Error(comm_context(*this, op) + ": tensor '" + role + "' is in " +
                device_name(t->device) + " memory, but this call's '" + a_role + "' is in " +
                device_name(a.device) +
                " memory; the NCCL communicator moves cuda tensors, or host tensors through MPI, "
                "not a mix");
  }
  return host;
}

template <typename Launch>
CommHandle NcclCommunicator::enqueue(const char* op, const NcclLane& lane, bool async,
                                     Launch&& launch) {
  use_device(op);
  // The communication stream starts after the work queued on the compute stream.
  cudaEvent_t ready = events_->take(*this, op);
  const cudaError_t recorded = cudaEventRecord(ready, compute_);
  const cudaError_t waited =
      recorded == cudaSuccess ? cudaStreamWaitEvent(lane.stream(), ready, 0) : recorded;
  events_->give_back(ready);  // the wait holds the recorded point; the event may be reused
  check_cuda(waited, *this, op, "cudaEventRecord/cudaStreamWaitEvent (compute -> comm)");

  launch(lane);

  cudaEvent_t done = events_->take(*this, op);
  const cudaError_t finished = cudaEventRecord(done, lane.stream());
  if (finished != cudaSuccess) events_->give_back(done);
  check_cuda(finished, *this, op, "cudaEventRecord (comm)");
  if (async)
    return CommHandle(
        std::make_unique<NcclRequest>(events_, done, compute_, comm_context(*this, op)));
  const cudaError_t ordered = cudaStreamWaitEvent(compute_, done, 0);
  events_->give_back(done);
  check_cuda(ordered, *this, op, "cudaStreamWaitEvent (comm -> compute)");
  return CommHandle();
}

// ---- all_reduce: in place ----

void NcclCommunicator::all_reduce(const Tensor& x, ReduceOp op) {
  start_all_reduce("all_reduce", x, op, false);
}

CommHandle NcclCommunicator::all_reduce_async(const Tensor& x, ReduceOp op) {
  return start_all_reduce("all_reduce_async", x, op, true);
}

CommHandle NcclCommunicator::start_all_reduce(const char* op, const Tensor& x, ReduceOp reduce,
                                              bool async) {
  if (on_host(op, x, "x")) {
    if (async) return host_->all_reduce_async(x, reduce);
    host_->all_reduce(x, reduce);
    return CommHandle();
  }
  check_buffer(*this, op, x, "x");
  const ncclDataType_t type = nccl_reduce_type(*this, op, x.dtype);
  if (x.numel() == 0) return CommHandle();
  return enqueue(op, collective_, async, [&](const NcclLane& lane) {
    check_nccl(ncclAllReduce(x.data, x.data, size_t(x.numel()), type, nccl_reduce_op(reduce),
                             lane.comm(), lane.stream()),
               *this, op, "ncclAllReduce", lane.comm());
  });
}

// ---- reduce_scatter: in [size * n] -> out [n] ----
// In place (out = the first block of in, as MPI_IN_PLACE): NCCL's in-place
// layout puts rank r's result in block r, so it is then copied to block 0.

void NcclCommunicator::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  start_reduce_scatter("reduce_scatter", in, out, op, false);
}

CommHandle NcclCommunicator::reduce_scatter_async(const Tensor& in, const Tensor& out,
                                                  ReduceOp op) {
  return start_reduce_scatter("reduce_scatter_async", in, out, op, true);
}

CommHandle NcclCommunicator::start_reduce_scatter(const char* op, const Tensor& in,
                                                  const Tensor& out, ReduceOp reduce,
                                                  bool async) {
  if (on_host(op, in, "in", &out, "out")) {
    if (async) return host_->reduce_scatter_async(in, out, reduce);
    host_->reduce_scatter(in, out, reduce);
    return CommHandle();
  }
  check_buffer(*this, op, in, "in");
  check_buffer(*this, op, out, "out");
  check_same_dtype(*this, op, in, out);
  check_reduce_scatter_sizes(*this, op, in, out);
  const bool in_place = reduce_scatter_in_place(*this, op, in, out);
  const ncclDataType_t type = nccl_reduce_type(*this, op, in.dtype);
  if (out.numel() == 0) return CommHandle();
  return enqueue(op, collective_, async, [&](const NcclLane& lane) {
    char* own_block = static_cast<char*>(in.data) + size_t(rank()) * out.nbytes();
    void* result = in_place ? own_block : out.data;
    check_nccl(ncclReduceScatter(in.data, result, size_t(out.numel()), type,
                                 nccl_reduce_op(reduce), lane.comm(), lane.stream()),
               *this, op, "ncclReduceScatter", lane.comm());
    if (in_place && result != out.data)
      check_cuda(cudaMemcpyAsync(out.data, result, out.nbytes(), cudaMemcpyDeviceToDevice,
                                 lane.stream()),
                 *this, op, "cudaMemcpyAsync (own block to the first)");
  });
}

// ---- all_gather: in [n] -> out [size * n] ----
// In place when `in` is block rank() of `out`: NCCL's own in-place layout.
// Elements move as bytes, so every dtype works.

void NcclCommunicator::all_gather(const Tensor& in, const Tensor& out) {
  start_all_gather("all_gather", in, out, false);
}

CommHandle NcclCommunicator::all_gather_async(const Tensor& in, const Tensor& out) {
  return start_all_gather("all_gather_async", in, out, true);
}

CommHandle NcclCommunicator::start_all_gather(const char* op, const Tensor& in, const Tensor& out,
                                              bool async) {
  if (on_host(op, in, "in", &out, "out")) {
    if (async) return host_->all_gather_async(in, out);
    host_->all_gather(in, out);
    return CommHandle();
  }
  check_buffer(*this, op, in, "in");
  check_buffer(*this, op, out, "out");
  check_same_dtype(*this, op, in, out);
  check_all_gather_sizes(*this, op, in, out);
  all_gather_in_place(*this, op, in, out);  // refuses other overlaps
  if (in.nbytes() == 0) return CommHandle();
  return enqueue(op, collective_, async, [&](const NcclLane& lane) {
    check_nccl(ncclAllGather(in.data, out.data, in.nbytes(), ncclUint8, lane.comm(), lane.stream()),
               *this, op, "ncclAllGather", lane.comm());
  });
}

// ---- broadcast, barrier ----

void NcclCommunicator::broadcast(const Tensor& x, int root) {
  const char* op = "broadcast";
  if (on_host(op, x, "x")) return host_->broadcast(x, root);
  check_buffer(*this, op, x, "x");
  check_rank_arg(*this, op, "root", root);
  if (x.nbytes() == 0) return;
  enqueue(op, collective_, false, [&](const NcclLane& lane) {
    check_nccl(ncclBroadcast(x.data, x.data, x.nbytes(), ncclUint8, root, lane.comm(),
                             lane.stream()),
               *this, op, "ncclBroadcast", lane.comm());
  });
}

void NcclCommunicator::barrier() { host_->barrier(); }

// ---- all_to_all: blocks of rows to and from every rank ----
// Rows move as bytes (every dtype works). A rank's block to itself is a send
// and a receive to itself in the same group, which NCCL pairs locally.

void NcclCommunicator::all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                                  const std::vector<int64_t>& send_offsets, const Tensor& out,
                                  const std::vector<int64_t>& recv_counts,
                                  const std::vector<int64_t>& recv_offsets) {
  const char* op = "all_to_all";
  if (on_host(op, in, "in", &out, "out"))
    return host_->all_to_all(in, send_counts, send_offsets, out, recv_counts, recv_offsets);
  check_all_to_all(*this, op, in, send_counts, send_offsets, out, recv_counts, recv_offsets);
  const size_t row_bytes = size_t(row_elements(in)) * dtype_size(in.dtype);
  if (row_bytes == 0) return;
  const auto* send_base = static_cast<const char*>(in.data);
  auto* recv_base = static_cast<char*>(out.data);
  enqueue(op, collective_, false, [&](const NcclLane& lane) {
    check_nccl(ncclGroupStart(), *this, op, "ncclGroupStart", lane.comm());
    for (int peer = 0; peer < size(); ++peer) {
      const size_t p = size_t(peer);
      if (send_counts[p] > 0)
        check_nccl(ncclSend(send_base + size_t(send_offsets[p]) * row_bytes,
                            size_t(send_counts[p]) * row_bytes, ncclUint8, peer, lane.comm(),
                            lane.stream()),
                   *this, op, "ncclSend", lane.comm());
      if (recv_counts[p] > 0)
        check_nccl(ncclRecv(recv_base + size_t(recv_offsets[p]) * row_bytes,
                            size_t(recv_counts[p]) * row_bytes, ncclUint8, peer, lane.comm(),
                            lane.stream()),
                   *this, op, "ncclRecv", lane.comm());
    }
    check_nccl(ncclGroupEnd(), *this, op, "ncclGroupEnd", lane.comm());
  });
}

// ---- point to point ----

void NcclCommunicator::send(const Tensor& x, int peer, int tag) {
  start_p2p("send", x, peer, tag, true, false);
}

void NcclCommunicator::recv(const Tensor& x, int peer, int tag) {
  start_p2p("recv", x, peer, tag, false, false);
}

CommHandle NcclCommunicator::send_async(const Tensor& x, int peer, int tag) {
  return start_p2p("send_async", x, peer, tag, true, true);
}

CommHandle NcclCommunicator::recv_async(const Tensor& x, int peer, int tag) {
  return start_p2p("recv_async", x, peer, tag, false, true);
}

const NcclLane& NcclCommunicator::p2p_lane(const char* op, int peer, int tag, bool sending) const {
  if (peer == rank())
    throw Error(comm_context(*this, op) + ": peer " + std::to_string(peer) +
                " is this rank; the NCCL communicator does not send cuda tensors to itself "
                "(copy them instead)");
  if (tag >= kDeviceTags)
    throw Error(comm_context(*this, op) + ": tag " + std::to_string(tag) +
                " is not below " + std::to_string(kDeviceTags) +
                "; the NCCL communicator moves cuda tensors on tags 0.." +
                std::to_string(kDeviceTags - 1) + " only (one NCCL communicator per tag)");
  const int sender = sending ? rank() : peer;
  const int receiver = sending ? peer : rank();
  return p2p_[size_t(tag * 2 + (sender > receiver ? 1 : 0))];
}

CommHandle NcclCommunicator::start_p2p(const char* op, const Tensor& x, int peer, int tag,
                                       bool sending, bool async) {
  if (on_host(op, x, "x")) {
    if (async) return sending ? host_->send_async(x, peer, tag) : host_->recv_async(x, peer, tag);
    if (sending) host_->send(x, peer, tag);
    else host_->recv(x, peer, tag);
    return CommHandle();
  }
  check_buffer(*this, op, x, "x");
  check_rank_arg(*this, op, "peer", peer);
  check_tag(*this, op, tag);
  const NcclLane& lane = p2p_lane(op, peer, tag, sending);
  if (x.nbytes() == 0) return CommHandle();
  return enqueue(op, lane, async, [&](const NcclLane& l) {
    if (sending)
      check_nccl(ncclSend(x.data, x.nbytes(), ncclUint8, peer, l.comm(), l.stream()), *this, op,
                 "ncclSend", l.comm());
    else
      check_nccl(ncclRecv(x.data, x.nbytes(), ncclUint8, peer, l.comm(), l.stream()), *this, op,
                 "ncclRecv", l.comm());
  });
}

// ---- split ----

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key,
                                                      const std::string& name) const {
  const char* op = "split";
  if (color < 0)
    throw Error(comm_context(*this, op) + ": color " + std::to_string(color) +
                " is negative; every rank must join a group");
  std::unique_ptr<Communicator> host = host_->split(color, key, name);
  use_device(op);
  ncclComm_t child = nullptr;
  ncclConfig_t config = nccl_config();
  check_nccl(ncclCommSplit(collective_.comm(), color, key, &child, &config), *this, op,
             "ncclCommSplit", collective_.comm());
  Communicator& host_group = *host;
  return std::make_unique<NcclCommunicator>(std::move(host), host_group, device_, compute_, child);
}

std::string NcclCommunicator::async_error() const {
  std::string error = collective_.async_error();
  for (const NcclLane& lane : p2p_)
    if (error.empty()) error = lane.async_error();
  return error.empty() ? error : comm_context(*this, "NCCL") + ": " + error;
}

void NcclCommunicator::abort_transport() {
  collective_.abort();
  for (NcclLane& lane : p2p_) lane.abort();
}

}  // namespace qj
