// Replays fuzz inputs without libFuzzer: calls LLVMFuzzerTestOneInput once on
// every file under the given files and folders (recursively, in sorted order),
// so that the normal build checks the checked-in corpus, crash reproducers
// included. A crash or an escaping exception names the input that caused it.
//   usage: fuzz_<name> PATH...
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

const char* current_input = "";  // for the signal handler

void report_crash(int signal) {
  const char* what = "replay: crashed (signal) on input ";
  (void)!write(2, what, std::strlen(what));
  (void)!write(2, current_input, std::strlen(current_input));
  (void)!write(2, "\n", 1);
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

std::vector<fs::path> inputs_of(const std::vector<std::string>& paths) {
  std::vector<fs::path> files;
  for (const std::string& path : paths) {
    if (fs::is_directory(path)) {
      for (const auto& entry : fs::recursive_directory_iterator(path))
        if (entry.is_regular_file()) files.push_back(entry.path());
    } else if (fs::is_regular_file(path)) {
      files.push_back(path);
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a folder\n", path.c_str());
      std::exit(1);
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<fs::path> files = inputs_of(std::vector<std::string>(argv + 1, argv + argc));
  if (files.empty()) {
    std::fprintf(stderr, "replay: no inputs (usage: %s FILE_OR_FOLDER...)\n", argv[0]);
    return 1;
  }
  for (int signal : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(signal, report_crash);
  for (const fs::path& file : files) {
    const std::string name = file.string();
    current_input = name.c_str();
    std::ifstream in(file, std::ios::binary);
    const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), {}};
    try {
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "replay: %s: uncaught exception: %s\n", name.c_str(), e.what());
      return 1;
    }
  }
  std::printf("replay: %zu inputs, no finding\n", files.size());
  return 0;
}
