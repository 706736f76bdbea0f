#pragma once
// Before an all_to_all, each rank knows how many rows it sends to every peer
// but not how many it will receive: exchange_counts tells it.
#include <cstdint>
#include <vector>

#include "qianjun/comm.h"

namespace qj {

// Rank r passes send_counts[p], the rows it will send to rank p (size() entries,
// none negative); it gets back recv_counts[p], the rows rank p will send it.
// Collective: every rank of the group calls it.
std::vector<int64_t> exchange_counts(Communicator& comm, const std::vector<int64_t>& send_counts);

}  // namespace qj
