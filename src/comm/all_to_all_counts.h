#pragma once
// Before an all_to_all, each rank knows how many rows it sends to every peer
// but not how many it will receive: exchange_counts tells it.
#include <cstdint>
#include <vector>

#include "qianjun/comm.h"

namespace qj {

// Rank r passes send_counts[p], the rows it will send to rank p (size() entries,
// none negative); it gets back recv_counts[p], the rows rank p will send it.
// With per_peer > 1 each peer gets a group of per_peer counts (send_counts
// [size() x per_peer], the group for p at p x per_peer; e.g. rows per expert),
// and recv_counts holds the group each rank p sent, in rank order.
// Collective: every rank of the group calls it with the same per_peer.
std::vector<int64_t> exchange_counts(Communicator& comm, const std::vector<int64_t>& send_counts,
                                     int per_peer = 1);

}  // namespace qj
