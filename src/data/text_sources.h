#pragma once
// The documents of a text corpus, read in a fixed order from files and folders:
//   - a plain-text file is one document (its whole contents);
//   - a JSONL file (name ending in .jsonl or .json) holds one document per
//     line, a JSON object whose "text" field is a string; a blank line is
//     skipped, a malformed one is reported with file and line number and
//     either skipped or fatal;
//   - a folder stands for every regular file below it, recursively, sorted by
//     path, each read by the two rules above.
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace qj {

enum class TextFormat { Plain, Jsonl };

struct TextSource {
  std::string path;
  TextFormat format = TextFormat::Plain;
  uint64_t bytes = 0;  // file size when listed
};

// The files the inputs name, folders expanded, in input order. Throws
// qj::Error naming the input if it does not exist, is neither a file nor a
// folder, or is a folder without files.
std::vector<TextSource> list_text_sources(const std::vector<std::string>& inputs);

struct TextDocument {
  std::string text;
  std::string origin;  // "path" for a plain file, "path:line" for a JSONL line
};

enum class JsonlErrors { Skip, Fatal };

class DocumentReader {
 public:
  // warn receives one message per skipped malformed line ("path:7: ...").
  DocumentReader(std::vector<TextSource> sources, JsonlErrors on_error,
                 std::function<void(const std::string&)> warn);

  // The next document in order; false when every source is read. Throws
  // qj::Error naming the file if one cannot be read, and for a malformed JSONL
  // line under JsonlErrors::Fatal.
  bool next(TextDocument& document);

  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t skipped_lines() const { return skipped_lines_; }

 private:
  bool next_jsonl_line(TextDocument& document);
  void read_plain_file(const TextSource& source, TextDocument& document);
  // The "text" of one JSONL line; false (and *problem set) if the line is malformed.
  static bool text_of_line(const std::string& line, std::string& text, std::string* problem);

  std::vector<TextSource> sources_;
  JsonlErrors on_error_;
  std::function<void(const std::string&)> warn_;
  size_t next_source_ = 0;
  std::ifstream jsonl_;        // the JSONL file being read, if any
  std::string jsonl_path_;
  uint64_t line_number_ = 0;
  std::string line_;           // reused line buffer
  uint64_t bytes_read_ = 0;
  uint64_t skipped_lines_ = 0;
};

}  // namespace qj
