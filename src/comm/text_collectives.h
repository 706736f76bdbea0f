#pragma once
// Collectives over text (error messages, checkpoint chunk lists): strings of
// any length travel as their length, then their bytes packed in int32 words.
#include <string>
#include <vector>

#include "qianjun/comm.h"

namespace qj {

// `root`'s text on every rank of the group.
std::string broadcast_text(Communicator& group, int root, const std::string& text);
// Every rank's text, in rank order, on every rank of the group.
std::vector<std::string> all_gather_text(Communicator& group, const std::string& text);

}  // namespace qj
