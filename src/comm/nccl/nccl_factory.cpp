// make_nccl_communicator: NCCL's world, bootstrapped over a host communicator.
#include <array>
#include <cstring>
#include <vector>

#include "comm/collective_errors.h"
#include "comm/nccl/nccl_comm.h"
#include "comm/nccl_factory.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 18, 0)
#error "the NCCL communicator needs NCCL 2.18 or newer (ncclCommSplit)"
#endif

namespace qj {

bool nccl_built() { return true; }

namespace {

constexpr const char* kSetUp = "NCCL set-up";
constexpr int kMinNcclVersion = 21800;  // ncclCommSplit

// The backend's GPU and stream, through its op table (the NCCL communicator
// orders its work after the backend's on that stream).
struct CudaPlace {
  int device = 0;
  cudaStream_t stream = nullptr;
};

CudaPlace cuda_place_of(const Communicator& bootstrap, const Backend& backend) {
  if (backend.device() != Device::Cuda || backend.name() != "cuda")
    throw Error(comm_context(bootstrap, kSetUp) + ": backend '" + backend.name() +
                "' is not the built-in cuda backend; the NCCL communicator needs backend.device=cuda");
  const CudaPlace place{backend.device_index(), static_cast<cudaStream_t>(backend.stream())};
  if (place.device < 0 || !place.stream)
    throw Error(comm_context(bootstrap, kSetUp) + ": backend 'cuda' names no device (" +
                std::to_string(place.device) + ") or no stream in its op table");
  return place;
}

// The GPU's UUID as 4 words, to compare across ranks.
std::array<int32_t, 4> device_uuid(const Communicator& bootstrap, int device) {
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, device), bootstrap, kSetUp, "cudaGetDeviceProperties");
  std::array<int32_t, 4> words{};
  static_assert(sizeof(words) == sizeof(prop.uuid.bytes));
  std::memcpy(words.data(), prop.uuid.bytes, sizeof(words));
  return words;
}

void check_library_version(const Communicator& bootstrap) {
  int version = 0;
  check_nccl(ncclGetVersion(&version), bootstrap, kSetUp, "ncclGetVersion", nullptr);
  if (version < kMinNcclVersion)
    throw Error(comm_context(bootstrap, kSetUp) + ": libnccl is version " +
                std::to_string(version) + ", older than the 2.18 this build needs (" +
                std::to_string(NCCL_VERSION_CODE) + " headers); point LD_LIBRARY_PATH at a newer one");
}

// Throws when two ranks have the same GPU UUID (NCCL cannot run them on one GPU).
void refuse_shared_gpus(const Communicator& bootstrap, const std::vector<int32_t>& uuids) {
  const size_t words = uuids.size() / size_t(bootstrap.size());
  auto uuid_of = [&](int r) { return uuids.data() + size_t(r) * words; };
  for (int a = 0; a < bootstrap.size(); ++a)
    for (int b = a + 1; b < bootstrap.size(); ++b)
      if (std::memcmp(uuid_of(a), uuid_of(b), words * sizeof(int32_t)) == 0)
        throw Error("NCCL communicator: ranks " + std::to_string(a) + " and " +
                    std::to_string(b) + " of '" + bootstrap.name() +
                    "' use the same GPU, and NCCL cannot run two ranks on one GPU; launch at most "
                    "as many ranks per node as it has GPUs (rank r uses GPU local_rank % count), "
                    "or use the staged MPI communicator, which shares GPUs through host memory");
}

// Selects the backend's GPU and checks it is this rank's alone; returns the
// backend's GPU and stream. Failures are agreed (RankedError): every rank throws.
CudaPlace select_unshared_gpu(Communicator& bootstrap, const Backend& backend) {
  CudaPlace place;
  std::array<int32_t, 4> mine{};
  agree_on_failure(bootstrap, [&] {
    place = cuda_place_of(bootstrap, backend);
    check_cuda(cudaSetDevice(place.device), bootstrap, kSetUp, "cudaSetDevice");
    check_library_version(bootstrap);
    mine = device_uuid(bootstrap, place.device);
  });
  std::vector<int32_t> all(size_t(bootstrap.size()) * mine.size());
  bootstrap.all_gather(Tensor(mine.data(), DType::I32, {int64_t(mine.size())}),
                       Tensor(all.data(), DType::I32, {int64_t(all.size())}));
  agree_on_failure(bootstrap, [&] { refuse_shared_gpus(bootstrap, all); });
  return place;
}

// Rank 0 creates the id; every rank receives its 128 bytes over `bootstrap`.
ncclUniqueId shared_unique_id(Communicator& bootstrap) {
  ncclUniqueId id{};
  agree_on_failure(bootstrap, [&] {
    if (bootstrap.rank() == 0)
      check_nccl(ncclGetUniqueId(&id), bootstrap, kSetUp, "ncclGetUniqueId", nullptr);
  });
  static_assert(sizeof(id) % sizeof(int32_t) == 0);
  std::array<int32_t, sizeof(id) / sizeof(int32_t)> words{};
  std::memcpy(words.data(), &id, sizeof(id));
  bootstrap.broadcast(Tensor(words.data(), DType::I32, {int64_t(words.size())}), 0);
  std::memcpy(&id, words.data(), sizeof(id));
  return id;
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap,
                                                     const Backend& cuda_backend) {
  const CudaPlace place = select_unshared_gpu(bootstrap, cuda_backend);
  const ncclUniqueId id = shared_unique_id(bootstrap);
  ncclComm_t nccl = nullptr;
  ncclConfig_t config = nccl_config();
  check_nccl(ncclCommInitRankConfig(&nccl, bootstrap.size(), id, bootstrap.rank(), &config),
             bootstrap, kSetUp, "ncclCommInitRankConfig", nullptr);
  return std::make_unique<NcclCommunicator>(nullptr, bootstrap, place.device, place.stream, nccl);
}

}  // namespace qj
