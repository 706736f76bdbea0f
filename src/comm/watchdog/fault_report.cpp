#include "comm/watchdog/fault_report.h"

#include <algorithm>
#include <cstdio>

namespace qj {

using nlohmann::json;

namespace {

std::string seconds(double s) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", s);
  return text;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string text;
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (i) text += ',';
    text += std::to_string(ranks[i]);
  }
  return text;
}

std::string who(const RankView& r) {
  return "rank " + std::to_string(r.rank) + " (pid " + std::to_string(r.pid) + " on " + r.host + ")";
}

const json* group_of(const RankView& r, const std::string& key) {
  if (!r.beat.contains("groups")) return nullptr;
  for (const json& g : r.beat["groups"])
    if (g.value("key", "") == key) return &g;
  return nullptr;
}

}  // namespace

std::string describe_op(const json& op) {
  std::string text = op.value("op", "?") + " #" + std::to_string(op.value("seq", 0)) + " on '" +
                     op.value("name", "?") + "'";
  const int peer = op.value("peer", -1);
  const std::string name = op.value("op", "");
  if (peer >= 0 && name.rfind("send", 0) == 0) text += " to rank " + std::to_string(peer);
  else if (peer >= 0 && name.rfind("recv", 0) == 0) text += " from rank " + std::to_string(peer);
  else if (op.contains("members")) {
    std::vector<int> members = op["members"].get<std::vector<int>>();
    text += " (ranks " + rank_list(members) + ")";
  }
  if (op.contains("transport")) {
    text += " through ";
    text += op.value("transport", std::string("?"));
  }
  if (op.value("bytes", int64_t(0)) > 0) text += ", " + std::to_string(op.value("bytes", int64_t(0))) + " bytes";
  return text;
}

std::string describe_activity(const RankView& r) {
  if (!r.connected && !r.finished) return "gone";
  if (r.finished) return "finished";
  const json pending = r.beat.contains("pending") ? r.beat["pending"] : json::array();
  for (const json& op : pending)
    if (op.value("waited", false))
      return "waiting " + seconds(op.value("age", 0.0)) + " in " + describe_op(op);
  if (!pending.empty())
    return "computing, with " + std::to_string(pending.size()) +
           " operation(s) in flight, the oldest " + describe_op(pending[0]) + " for " +
           seconds(pending[0].value("age", 0.0));
  if (r.beat.contains("last") && !r.beat["last"].is_null())
    return "computing (its last operation, " + describe_op(r.beat["last"]) + ", ended " +
           seconds(r.beat["last"].value("ago", 0.0)) + " before its last heartbeat)";
  return "computing (no operation yet)";
}

namespace {

// The ranks `op` waits for: for a collective, the members that have not yet
// started it (their count on the group is below its number); for a send or
// receive, the peer.
std::vector<int> blockers_of(const json& op, const std::vector<RankView>& ranks) {
  std::vector<int> blockers;
  if (op.value("p2p", false)) {
    const int peer = op.value("peer", -1);
    if (peer >= 0 && peer < int(ranks.size())) blockers.push_back(peer);
    return blockers;
  }
  if (!op.contains("members")) return blockers;
  const uint64_t seq = op.value("seq", uint64_t(0));
  for (int m : op["members"].get<std::vector<int>>()) {
    if (m < 0 || m >= int(ranks.size())) continue;
    const json* g = group_of(ranks[size_t(m)], op.value("group", ""));
    if (!g || g->value("coll", uint64_t(0)) < seq) blockers.push_back(m);
  }
  return blockers;
}

// What a rank waits for, from the operations it is blocked on.
std::vector<int> blockers_of(const RankView& r, const std::vector<RankView>& ranks) {
  std::vector<int> blockers;
  if (!r.beat.contains("pending")) return blockers;
  for (const json& op : r.beat["pending"])
    if (op.value("waited", false))
      for (int b : blockers_of(op, ranks))
        if (b != r.rank) blockers.push_back(b);
  return blockers;
}

}  // namespace

FaultReport diagnose_timeout(int reporter, const json& op, double timeout_s,
                             const std::vector<RankView>& ranks, double silent_after_s) {
  FaultReport report;
  const std::string what = describe_op(op);
  report.lines.push_back("watchdog: " + what + " on rank " + std::to_string(reporter) +
                         " passed its deadline (parallel.timeout_s=" + seconds(timeout_s) + ")");
  // Follow who waits for whom from the late operation; the chain ends at ranks
  // that wait for nobody (busy or hung outside communication) or are silent.
  std::vector<int> frontier = blockers_of(op, ranks);
  const std::vector<int> first = frontier;
  std::vector<bool> seen(ranks.size(), false);
  std::vector<int> culprits;
  seen[size_t(reporter)] = reporter >= 0 && reporter < int(ranks.size());
  while (!frontier.empty()) {
    const int r = frontier.back();
    frontier.pop_back();
    if (seen[size_t(r)]) continue;
    seen[size_t(r)] = true;
    const RankView& view = ranks[size_t(r)];
    report.lines.push_back("watchdog:   rank " + std::to_string(r) + ": " + describe_activity(view));
    if (view.silent_s > silent_after_s) {
      report.lines.back() += " (no heartbeat for " + seconds(view.silent_s) + ": stopped or hung)";
      culprits.push_back(r);
      continue;
    }
    const std::vector<int> next = blockers_of(view, ranks);
    if (next.empty()) culprits.push_back(r);
    frontier.insert(frontier.end(), next.begin(), next.end());
  }
  for (const RankView& r : ranks)  // stopped ranks the chain did not reach
    if (!seen[size_t(r.rank)] && r.connected && !r.finished && r.silent_s > silent_after_s) {
      report.lines.push_back("watchdog:   rank " + std::to_string(r.rank) + " sent no heartbeat for " +
                             seconds(r.silent_s) + ": stopped or hung");
      culprits.push_back(r.rank);
    }
  std::sort(culprits.begin(), culprits.end());
  report.culprits = culprits;
  std::string cause;
  if (!culprits.empty()) {
    cause = "rank(s) behind: " + rank_list(culprits);
    // A silent rank behind is the same fault the silence check reports a moment
    // later: say it as that check would, whichever fires first.
    for (int r : culprits)
      if (ranks[size_t(r)].silent_s > silent_after_s)
        cause += "; " + who(ranks[size_t(r)]) + " sent no heartbeat for " +
                 seconds(ranks[size_t(r)].silent_s) + ": it is stopped or hung";
  }
  else if (!first.empty())
    cause = "the ranks wait for each other in a cycle; first waited for: rank(s) " + rank_list(first);
  else
    cause = "every rank of the group is inside it (the transport itself is stuck)";
  report.summary = what + " on rank " + std::to_string(reporter) + " passed parallel.timeout_s=" +
                   seconds(timeout_s) + "; " + cause;
  report.lines.push_back("watchdog: " + report.summary);
  return report;
}

FaultReport diagnose_silence(const RankView& r, double timeout_s, const std::vector<RankView>& ranks) {
  FaultReport report;
  report.culprits = {r.rank};
  report.lines.push_back("watchdog: " + who(r) + " was " + describe_activity(r) +
                         " at its last heartbeat");
  for (const RankView& other : ranks)
    if (other.rank != r.rank && other.connected && !other.finished)
      report.lines.push_back("watchdog:   rank " + std::to_string(other.rank) + ": " +
                             describe_activity(other));
  report.summary = who(r) + " sent no heartbeat for " + seconds(r.silent_s) +
                   " (parallel.timeout_s=" + seconds(timeout_s) + "): it is stopped or hung";
  report.lines.push_back("watchdog: " + report.summary);
  return report;
}

FaultReport diagnose_death(const RankView& r, const std::string& message) {
  FaultReport report;
  report.culprits = {r.rank};
  if (!message.empty()) {
    report.summary = who(r) + " ended with an error: " + message;
  } else {
    report.summary = who(r) + " died (its process ended without a word: killed, or crashed); at its " +
                     "last heartbeat, " + seconds(r.silent_s) + " before, it was " +
                     describe_activity(RankView{r.rank, r.host, r.pid, true, false, 0, r.beat});
  }
  report.lines.push_back("watchdog: " + report.summary);
  return report;
}

}  // namespace qj
