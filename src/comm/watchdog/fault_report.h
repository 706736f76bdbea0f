#pragma once
// What the watchdog hub says when a rank dies, stops or an operation passes its
// deadline: from the last heartbeat of every rank (its groups' sequence numbers,
// its pending operations), which rank is at fault and what each is doing.
// Pure functions of what the hub knows, so that tests can feed them states.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qj {

// The hub's view of one rank.
struct RankView {
  int rank = 0;
  std::string host;
  long pid = 0;
  bool connected = false;  // has said hello and not gone
  bool finished = false;   // said goodbye (ended normally)
  double silent_s = 0;     // since its last heartbeat
  nlohmann::json beat;     // its last heartbeat: {"groups": [...], "pending": [...], "last": {...}}
};

// A heartbeat's operation as text: "all_reduce #12 on 'tp' (ranks 0,1)" and, for
// a send or receive, the peer ("recv #3 on 'pp' from rank 2"); for a group a
// collective plugin carries, the plugin ("... through collective plugin 'PATH'").
std::string describe_op(const nlohmann::json& op);
// What a rank is doing, from its last heartbeat: "waiting 5.2 s in <op>", or "not
// communicating (its last operation, <op>, ended 0.3 s ago)".
std::string describe_activity(const RankView& rank);

struct FaultReport {
  std::vector<int> culprits;       // the ranks at fault (behind, silent or dead)
  std::vector<std::string> lines;  // the explanation, most important last
  std::string summary;             // one line for every rank's log
};

// `op` of rank `reporter` passed `timeout_s`. The ranks at fault are found by
// following who waits for whom: a collective waits for the members of its group
// that have not started it (their count on the group is lower: they are behind),
// a send or receive for its peer; the chain ends at ranks that wait for nobody
// (busy or hung outside communication) or sent no heartbeat for
// `silent_after_s` (stopped).
FaultReport diagnose_timeout(int reporter, const nlohmann::json& op, double timeout_s,
                             const std::vector<RankView>& ranks, double silent_after_s);
// `rank` sent no heartbeat for more than `timeout_s`, though its connection is open.
FaultReport diagnose_silence(const RankView& rank, double timeout_s,
                             const std::vector<RankView>& ranks);
// `rank`'s connection closed before it said goodbye: its process ended.
// `message` is its own last word when it reported an error first ("" if none).
FaultReport diagnose_death(const RankView& rank, const std::string& message);

}  // namespace qj
