#include "comm/staged_comm.h"

#include <functional>
#include <optional>
#include <vector>

#include "comm/comm_checks.h"

namespace qj {

namespace {

// A host copy of a tensor (or of a tensor of the same shape).
struct HostCopy {
  std::vector<char> bytes;
  Tensor tensor;

  explicit HostCopy(const Tensor& like) : bytes(like.nbytes()), tensor(like) {
    tensor.data = bytes.data();
    tensor.device = Device::Host;
  }
};

bool on_host(const Tensor& t) { return t.device == Device::Host; }

// An inner request on host buffers, then the copies back to the device.
class StagedRequest final : public CommRequest {
 public:
  StagedRequest(CommHandle inner, std::vector<std::shared_ptr<HostCopy>> buffers,
                std::function<void()> on_complete)
      : inner_(std::move(inner)), buffers_(std::move(buffers)), on_complete_(std::move(on_complete)) {}

  void wait() override {
    inner_.wait();
    finish();
  }
  bool test() override {
    if (!inner_.test()) return false;
    finish();
    return true;
  }

 private:
  void finish() {
    if (on_complete_) on_complete_();
    on_complete_ = nullptr;
  }
  CommHandle inner_;
  std::vector<std::shared_ptr<HostCopy>> buffers_;
  std::function<void()> on_complete_;
};

class StagedCommunicator final : public Communicator {
 public:
  StagedCommunicator(std::unique_ptr<Communicator> owned, Communicator& inner,
                     const Backend& backend)
      : owned_(std::move(owned)), inner_(&inner), be_(backend) {}

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const std::string& name() const override { return inner_->name(); }

  // The blocking calls stay blocking on the inner communicator: MPI matches a
  // blocking collective only with a blocking one, and with mixed backends
  // (parallel.stage_backends) the other end may be a host rank calling it directly.
  void all_reduce(const Tensor& x, ReduceOp op) override {
    if (on_host(x)) return inner_->all_reduce(x, op);
    auto h = upload(x);
    inner_->all_reduce(h->tensor, op);
    download(*h, x);
  }
  CommHandle all_reduce_async(const Tensor& x, ReduceOp op) override {
    if (on_host(x)) return inner_->all_reduce_async(x, op);
    auto h = upload(x);
    CommHandle inner = inner_->all_reduce_async(h->tensor, op);
    return staged(std::move(inner), {h}, x);
  }

  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    if (on_host(in) && on_host(out)) return inner_->reduce_scatter(in, out, op);
    auto hin = upload(in);
    HostCopy hout(out);
    inner_->reduce_scatter(hin->tensor, hout.tensor, op);
    download(hout, out);
  }
  CommHandle reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    if (on_host(in) && on_host(out)) return inner_->reduce_scatter_async(in, out, op);
    auto hin = upload(in);
    if (out.data == in.data) {  // in place: the result is the start of `in`
      Tensor hout = out;
      hout.data = hin->bytes.data();
      hout.device = Device::Host;
      CommHandle inner = inner_->reduce_scatter_async(hin->tensor, hout, op);
      return staged(std::move(inner), {hin}, out);
    }
    auto hout = std::make_shared<HostCopy>(out);
    CommHandle inner = inner_->reduce_scatter_async(hin->tensor, hout->tensor, op);
    return staged(std::move(inner), {hin, hout}, out);
  }

  void all_gather(const Tensor& in, const Tensor& out) override {
    if (on_host(in) && on_host(out)) return inner_->all_gather(in, out);
    auto hin = upload(in);
    HostCopy hout(out);
    inner_->all_gather(hin->tensor, hout.tensor);
    download(hout, out);
  }
  CommHandle all_gather_async(const Tensor& in, const Tensor& out) override {
    if (on_host(in) && on_host(out)) return inner_->all_gather_async(in, out);
    const char* in_bytes = static_cast<const char*>(in.data);
    const char* out_bytes = static_cast<const char*>(out.data);
    if (in_bytes >= out_bytes && in_bytes < out_bytes + out.nbytes()) {  // in place
      auto hout = upload(out);
      Tensor hin = in;
      hin.data = hout->bytes.data() + (in_bytes - out_bytes);
      hin.device = Device::Host;
      CommHandle inner = inner_->all_gather_async(hin, hout->tensor);
      return staged(std::move(inner), {hout}, out);
    }
    auto hin = upload(in);
    auto hout = std::make_shared<HostCopy>(out);
    CommHandle inner = inner_->all_gather_async(hin->tensor, hout->tensor);
    return staged(std::move(inner), {hin, hout}, out);
  }

  void broadcast(const Tensor& x, int root) override {
    if (on_host(x)) return inner_->broadcast(x, root);
    auto h = upload(x);
    inner_->broadcast(h->tensor, root);
    download(*h, x);
  }

  // Only the received blocks go back to the device: rows of `out` outside them
  // keep their values, as with a host communicator.
  void all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                  const std::vector<int64_t>& send_offsets, const Tensor& out,
                  const std::vector<int64_t>& recv_counts,
                  const std::vector<int64_t>& recv_offsets) override {
    if (on_host(in) && on_host(out))
      return inner_->all_to_all(in, send_counts, send_offsets, out, recv_counts, recv_offsets);
    check_all_to_all(*this, "all_to_all", in, send_counts, send_offsets, out, recv_counts,
                     recv_offsets);
    std::shared_ptr<HostCopy> hin = on_host(in) ? nullptr : upload(in);
    std::optional<HostCopy> hout;
    if (!on_host(out)) hout.emplace(out);
    inner_->all_to_all(hin ? hin->tensor : in, send_counts, send_offsets,
                       hout ? hout->tensor : out, recv_counts, recv_offsets);
    if (!hout) return;
    const size_t row_bytes = size_t(row_elements(out)) * dtype_size(out.dtype);
    for (size_t p = 0; p < recv_counts.size(); ++p) {
      if (recv_counts[p] == 0) continue;
      const size_t begin = size_t(recv_offsets[p]) * row_bytes;
      be_.copy_to_device(static_cast<char*>(out.data) + begin, hout->bytes.data() + begin,
                         size_t(recv_counts[p]) * row_bytes);
    }
  }

  void send(const Tensor& x, int peer, int tag) override { send_async(x, peer, tag).wait(); }
  void recv(const Tensor& x, int peer, int tag) override { recv_async(x, peer, tag).wait(); }
  CommHandle send_async(const Tensor& x, int peer, int tag) override {
    if (on_host(x)) return inner_->send_async(x, peer, tag);
    auto h = upload(x);
    CommHandle inner = inner_->send_async(h->tensor, peer, tag);
    return staged(std::move(inner), {h}, Tensor{});
  }
  CommHandle recv_async(const Tensor& x, int peer, int tag) override {
    if (on_host(x)) return inner_->recv_async(x, peer, tag);
    auto h = std::make_shared<HostCopy>(x);
    CommHandle inner = inner_->recv_async(h->tensor, peer, tag);
    return staged(std::move(inner), {h}, x);
  }
  void barrier() override { inner_->barrier(); }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) const override {
    return make_staged_communicator(inner_->split(color, key, name), be_);
  }

 private:
  std::shared_ptr<HostCopy> upload(const Tensor& x) const {
    auto h = std::make_shared<HostCopy>(x);
    be_.copy_to_host(h->bytes.data(), x.data, x.nbytes());
    return h;
  }
  void download(const HostCopy& h, const Tensor& x) const {
    be_.copy_to_device(x.data, h.bytes.data(), x.nbytes());
  }
  // The last buffer holds the result for `result` (if defined) when the inner call completes.
  CommHandle staged(CommHandle inner, std::vector<std::shared_ptr<HostCopy>> buffers,
                    const Tensor& result) const {
    std::shared_ptr<HostCopy> from = buffers.back();
    std::function<void()> done;
    if (result.defined()) done = [this, from, result] { download(*from, result); };
    return CommHandle(std::make_unique<StagedRequest>(std::move(inner), std::move(buffers),
                                                      std::move(done)));
  }

  std::unique_ptr<Communicator> owned_;  // null when wrapping a borrowed group
  Communicator* inner_;
  const Backend& be_;
};

}  // namespace

std::unique_ptr<Communicator> make_staged_communicator(std::unique_ptr<Communicator> host_comm,
                                                       const Backend& backend) {
  Communicator& inner = *host_comm;
  return std::make_unique<StagedCommunicator>(std::move(host_comm), inner, backend);
}

std::unique_ptr<Communicator> make_staged_communicator(Communicator& host_comm,
                                                       const Backend& backend) {
  return std::make_unique<StagedCommunicator>(nullptr, host_comm, backend);
}

}  // namespace qj
