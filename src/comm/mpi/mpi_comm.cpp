#include "comm/mpi/mpi_comm.h"

#include "comm/comm_checks.h"
#include "comm/mpi/mpi_support.h"

#include <climits>

namespace qj {

namespace {

// Checks shared by every call that moves `x`: contiguous, host, has memory.
void check_io(const Communicator& comm, const char* op, const Tensor& x, const char* role) {
  check_host(comm, op, x, role);
  check_buffer(comm, op, x, role);
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name)
    : comm_(comm), owned_(comm != MPI_COMM_WORLD && comm != MPI_COMM_SELF), name_(std::move(name)) {
  const std::string context = "communicator set-up of '" + name_ + "'";
  check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), context);
  check_mpi(MPI_Comm_rank(comm_, &rank_), context);
  check_mpi(MPI_Comm_size(comm_, &size_), context);
  if (owned_) check_mpi(MPI_Comm_set_name(comm_, name_.c_str()), context);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && !finalized) MPI_Comm_free(&comm_);
}

void MpiCommunicator::check(int rc, const char* op) const {
  if (rc != MPI_SUCCESS) check_mpi(rc, comm_context(*this, op));
}

CommHandle MpiCommunicator::handle_for(MPI_Request request, const char* op, int64_t recv_count,
                                       MPI_Datatype recv_type) const {
  return CommHandle(
      std::make_unique<MpiRequest>(request, comm_context(*this, op), recv_count, recv_type));
}

// ---- all_reduce: in place ----

void MpiCommunicator::all_reduce(const Tensor& x, ReduceOp op) {
  const char* name = "all_reduce";
  check_io(*this, name, x, "x");
  MPI_Op mpi_op = mpi_reduce_op(*this, name, op, x.dtype);
  int count = mpi_count(*this, name, x.numel());
  check(MPI_Allreduce(MPI_IN_PLACE, x.data, count, mpi_datatype(x.dtype), mpi_op, comm_), name);
}

CommHandle MpiCommunicator::all_reduce_async(const Tensor& x, ReduceOp op) {
  const char* name = "all_reduce_async";
  check_io(*this, name, x, "x");
  MPI_Op mpi_op = mpi_reduce_op(*this, name, op, x.dtype);
  int count = mpi_count(*this, name, x.numel());
  MPI_Request request;
  check(MPI_Iallreduce(MPI_IN_PLACE, x.data, count, mpi_datatype(x.dtype), mpi_op, comm_, &request),
        name);
  return handle_for(request, name);
}

// ---- reduce_scatter: in [size * n] -> out [n] ----
// `out` may be `in` itself (MPI_IN_PLACE: the result lands in the first block).

namespace {

const void* reduce_scatter_send_buffer(const Communicator& comm, const char* op, const Tensor& in,
                                       const Tensor& out) {
  check_io(comm, op, in, "in");
  check_io(comm, op, out, "out");
  check_same_dtype(comm, op, in, out);
  check_reduce_scatter_sizes(comm, op, in, out);
  return reduce_scatter_in_place(comm, op, in, out) ? MPI_IN_PLACE : in.data;
}

}  // namespace

void MpiCommunicator::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  const char* name = "reduce_scatter";
  const void* send = reduce_scatter_send_buffer(*this, name, in, out);
  MPI_Op mpi_op = mpi_reduce_op(*this, name, op, in.dtype);
  int count = mpi_count(*this, name, out.numel());
  check(MPI_Reduce_scatter_block(send, out.data, count, mpi_datatype(in.dtype), mpi_op, comm_),
        name);
}

CommHandle MpiCommunicator::reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) {
  const char* name = "reduce_scatter_async";
  const void* send = reduce_scatter_send_buffer(*this, name, in, out);
  MPI_Op mpi_op = mpi_reduce_op(*this, name, op, in.dtype);
  int count = mpi_count(*this, name, out.numel());
  MPI_Request request;
  check(MPI_Ireduce_scatter_block(send, out.data, count, mpi_datatype(in.dtype), mpi_op, comm_,
                                  &request),
        name);
  return handle_for(request, name);
}

// ---- all_gather: in [n] -> out [size * n] ----
// `in` may be this rank's own block of `out` (MPI_IN_PLACE).

namespace {

const void* all_gather_send_buffer(const Communicator& comm, const char* op, const Tensor& in,
                                   const Tensor& out) {
  check_io(comm, op, in, "in");
  check_io(comm, op, out, "out");
  check_same_dtype(comm, op, in, out);
  check_all_gather_sizes(comm, op, in, out);
  return all_gather_in_place(comm, op, in, out) ? MPI_IN_PLACE : in.data;
}

}  // namespace

void MpiCommunicator::all_gather(const Tensor& in, const Tensor& out) {
  const char* name = "all_gather";
  const void* send = all_gather_send_buffer(*this, name, in, out);
  MPI_Datatype type = mpi_datatype(in.dtype);
  int count = mpi_count(*this, name, in.numel());
  mpi_count(*this, name, out.numel());
  check(MPI_Allgather(send, count, type, out.data, count, type, comm_), name);
}

CommHandle MpiCommunicator::all_gather_async(const Tensor& in, const Tensor& out) {
  const char* name = "all_gather_async";
  const void* send = all_gather_send_buffer(*this, name, in, out);
  MPI_Datatype type = mpi_datatype(in.dtype);
  int count = mpi_count(*this, name, in.numel());
  mpi_count(*this, name, out.numel());
  MPI_Request request;
  check(MPI_Iallgather(send, count, type, out.data, count, type, comm_, &request), name);
  return handle_for(request, name);
}

// ---- all_to_all: blocks of rows to and from every rank ----
// Counts and displacements are in rows, with a contiguous datatype of one row,
// so MPI's int counts limit the rows of a tensor (2^31-1), not its elements.

namespace {

// MPI_Type_contiguous of one row, committed for one call and freed after it.
class RowType {
 public:
  RowType(const Communicator& comm, const char* op, const Tensor& t) {
    const int elements = mpi_count(comm, op, row_elements(t));
    const std::string context = comm_context(comm, op) + " (row datatype)";
    check_mpi(MPI_Type_contiguous(elements, mpi_datatype(t.dtype), &type_), context);
    const int rc = MPI_Type_commit(&type_);
    if (rc != MPI_SUCCESS) MPI_Type_free(&type_);
    check_mpi(rc, context);
  }
  ~RowType() { MPI_Type_free(&type_); }
  RowType(const RowType&) = delete;
  RowType& operator=(const RowType&) = delete;
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

// Row counts or offsets as MPI's ints (already checked non-negative).
std::vector<int> mpi_rows(const Communicator& comm, const char* op,
                          const std::vector<int64_t>& rows, const char* what) {
  std::vector<int> ints(rows.size());
  for (size_t p = 0; p < rows.size(); ++p) {
    if (rows[p] > INT_MAX)
      throw Error(comm_context(comm, op) + ": " + what + "[" + std::to_string(p) + "] = " +
                  std::to_string(rows[p]) + " rows exceed MPI's count limit of 2^31-1");
    ints[p] = int(rows[p]);
  }
  return ints;
}

}  // namespace

void MpiCommunicator::all_to_all(const Tensor& in, const std::vector<int64_t>& send_counts,
                                 const std::vector<int64_t>& send_offsets, const Tensor& out,
                                 const std::vector<int64_t>& recv_counts,
                                 const std::vector<int64_t>& recv_offsets) {
  const char* name = "all_to_all";
  check_host(*this, name, in, "in");
  check_host(*this, name, out, "out");
  check_all_to_all(*this, name, in, send_counts, send_offsets, out, recv_counts, recv_offsets);
  const RowType row(*this, name, in);
  const std::vector<int> sendcounts = mpi_rows(*this, name, send_counts, "send_counts");
  const std::vector<int> sdispls = mpi_rows(*this, name, send_offsets, "send_offsets");
  const std::vector<int> recvcounts = mpi_rows(*this, name, recv_counts, "recv_counts");
  const std::vector<int> rdispls = mpi_rows(*this, name, recv_offsets, "recv_offsets");
  check(MPI_Alltoallv(in.data, sendcounts.data(), sdispls.data(), row.get(), out.data,
                      recvcounts.data(), rdispls.data(), row.get(), comm_),
        name);
}

// ---- broadcast, barrier ----

void MpiCommunicator::broadcast(const Tensor& x, int root) {
  const char* name = "broadcast";
  check_io(*this, name, x, "x");
  check_rank_arg(*this, name, "root", root);
  int count = mpi_count(*this, name, x.numel());
  check(MPI_Bcast(x.data, count, mpi_datatype(x.dtype), root, comm_), name);
}

void MpiCommunicator::barrier() { check(MPI_Barrier(comm_), "barrier"); }

// ---- point to point ----

void MpiCommunicator::send(const Tensor& x, int peer, int tag) {
  const char* name = "send";
  check_io(*this, name, x, "x");
  check_rank_arg(*this, name, "peer", peer);
  check_tag(*this, name, tag);
  int count = mpi_count(*this, name, x.numel());
  check(MPI_Send(x.data, count, mpi_datatype(x.dtype), peer, tag, comm_), name);
}

void MpiCommunicator::recv(const Tensor& x, int peer, int tag) {
  // Through a request, so that the size check of a completed receive is shared.
  start_recv(x, peer, tag, "recv").wait();
}

CommHandle MpiCommunicator::send_async(const Tensor& x, int peer, int tag) {
  const char* name = "send_async";
  check_io(*this, name, x, "x");
  check_rank_arg(*this, name, "peer", peer);
  check_tag(*this, name, tag);
  int count = mpi_count(*this, name, x.numel());
  MPI_Request request;
  check(MPI_Isend(x.data, count, mpi_datatype(x.dtype), peer, tag, comm_, &request), name);
  return handle_for(request, name);
}

CommHandle MpiCommunicator::recv_async(const Tensor& x, int peer, int tag) {
  return start_recv(x, peer, tag, "recv_async");
}

CommHandle MpiCommunicator::start_recv(const Tensor& x, int peer, int tag, const char* name) {
  check_io(*this, name, x, "x");
  check_rank_arg(*this, name, "peer", peer);
  check_tag(*this, name, tag);
  int count = mpi_count(*this, name, x.numel());
  MPI_Datatype type = mpi_datatype(x.dtype);
  MPI_Request request;
  check(MPI_Irecv(x.data, count, type, peer, tag, comm_, &request), name);
  return handle_for(request, name, count, type);
}

// ---- split ----

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key,
                                                     const std::string& name) const {
  if (color < 0)
    throw Error(comm_context(*this, "split") + ": color " + std::to_string(color) +
                " is negative; every rank must join a group");
  MPI_Comm group;
  check(MPI_Comm_split(comm_, color, key, &group), "split");
  return std::make_unique<MpiCommunicator>(group, name);
}

}  // namespace qj
