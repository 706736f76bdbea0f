// qj-ckpt: looks inside, checks and exports saved checkpoints.
//
//   qj-ckpt info DIR                                         what was saved, from the manifest
//   qj-ckpt verify DIR [--key-file F]                        every byte of it, every problem listed
//   qj-ckpt export DIR --output W.safetensors [--key-file F] the weights for Hugging Face
//
// DIR is a step directory (holding manifest.json) or a checkpoint root (then its
// newest committed checkpoint, which is named). The key of an encrypted
// checkpoint is hex text in F, or in the QJ_CHECKPOINT_KEY environment variable.
// Exit status: 0 success; 1 verify found damaged data; 2 unusable input (no such
// directory, a damaged manifest, a newer format, a missing or wrong key).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "checkpoint/checkpoint_dir.h"
#include "checkpoint/checkpoint_export.h"
#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/checkpoint_verify.h"
#include "checkpoint/durable_file.h"
#include "checkpoint/manifest.h"
#include "core/command_line.h"
#include "qianjun/error.h"

namespace {

namespace fs = std::filesystem;

constexpr int kExitDamaged = 1;

constexpr const char* kNotes =
    "commands:\n"
    "  qj-ckpt info DIR                                    what was saved, from the manifest\n"
    "  qj-ckpt verify DIR [--key-file F]                   every byte of it, every problem listed\n"
    "  qj-ckpt export DIR --output W.safetensors [--key-file F]  the weights for Hugging Face\n"
    "DIR: a step directory (with manifest.json) or a checkpoint root (its newest checkpoint).\n"
    "The key of an encrypted checkpoint: hex text in F, or in $QJ_CHECKPOINT_KEY.\n"
    "Exit status: 0 ok, 1 verify found damaged data, 2 unusable input.\n";

struct Args {
  std::string command, dir, output, key_file;
};

Args parse_args(int argc, char** argv) {
  Args args;
  qj::CommandLine cli("qj-ckpt", "Looks inside, checks and exports saved checkpoints.");
  cli.positional("COMMAND", "info, verify or export",
                 [&](const std::string& v) {
                   if (v != "info" && v != "verify" && v != "export")
                     throw qj::Error("unknown command '" + v + "' (info, verify or export)");
                   args.command = v;
                 })
      .positional("DIR", "a step directory or a checkpoint root", [&](const std::string& v) { args.dir = v; })
      .value("--output", "W.safetensors", "where export writes the weights",
             [&](const std::string& v) { args.output = v; })
      .value("--key-file", "F", "the key of an encrypted checkpoint, as hex text",
             [&](const std::string& v) { args.key_file = v; })
      .required("COMMAND")
      .required("DIR")
      .notes(kNotes);
  cli.parse(argc, argv);
  if (args.command == "export" && args.output.empty())
    throw qj::Error("command line: qj-ckpt export needs --output W.safetensors");
  if (args.command != "export" && !args.output.empty())
    throw qj::Error("command line: --output belongs to qj-ckpt export");
  return args;
}

// A step directory as it is; a root: its newest committed checkpoint, named on stdout.
std::string resolve_checkpoint(const std::string& dir) {
  if (qj::is_checkpoint_dir(dir)) return dir;
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw qj::Error(dir + ": no such checkpoint or directory");
  if (!fs::is_directory(dir, ec))
    throw qj::Error(dir + ": not a directory (give a step directory or a checkpoint root)");
  const std::vector<qj::StoredCheckpoint> all = qj::committed_checkpoints(dir);
  if (all.empty())
    throw qj::Error(dir + ": no manifest.json, and no committed checkpoint (step_*/manifest.json) in it");
  std::printf("newest of %zu committed checkpoints in %s: %s\n", all.size(), dir.c_str(),
              all.front().path.c_str());
  return all.front().path;
}

qj::Manifest read_manifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / "manifest.json").string();
  return qj::parse_manifest(qj::read_small_file(path), path);
}

// CheckpointReader would say "set checkpoint.key_file"; say it in this tool's words.
void require_key(const std::string& dir, const qj::Manifest& m, const std::string& key_file) {
  const char* env = std::getenv("QJ_CHECKPOINT_KEY");
  if (m.encryption == "none" || !key_file.empty() || (env != nullptr && *env != '\0')) return;
  throw qj::Error("checkpoint " + dir + " is encrypted (" + m.encryption +
                  "): give its key with --key-file F (hex) or in QJ_CHECKPOINT_KEY");
}

std::string on_off(bool b) { return b ? "on" : "off"; }

void print_counts(const qj::Manifest& m) {
  size_t weights = 0, chunks = 0;
  uint64_t parameters = 0, bytes = 0;
  for (const auto& [name, t] : m.tensors) {
    chunks += t.chunks.size();
    if (qj::is_optimizer_tensor(name)) continue;
    ++weights;
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= uint64_t(d);
    parameters += n;
  }
  for (const auto& [file, size] : m.files) bytes += size;
  std::printf("tensors: %zu (%zu weights with %llu parameters, %zu optimizer moments)\n", m.tensors.size(),
              weights, static_cast<unsigned long long>(parameters), m.tensors.size() - weights);
  std::printf("chunks: %zu\n", chunks);
  std::printf("total bytes: %llu in %zu files\n", static_cast<unsigned long long>(bytes), m.files.size());
  for (const auto& [file, size] : m.files)
    std::printf("  %s  %llu bytes\n", file.c_str(), static_cast<unsigned long long>(size));
}

int info(const std::string& dir) {
  const qj::Manifest m = read_manifest(dir);
  const qj::SavedMesh& s = m.mesh;
  std::printf("checkpoint: %s\n", dir.c_str());
  std::printf("format version: %d.%d\n", m.format_major, m.format_minor);
  std::printf("id: %s\n", m.id.c_str());
  std::printf("step: %lld\n", static_cast<long long>(m.step));
  std::printf("consumed samples: %llu\n", static_cast<unsigned long long>(m.consumed_samples));
  std::printf("optimizer: adamw, %d steps\n", m.optimizer_steps);
  std::printf("seed: %llu, data shuffle %s\n", static_cast<unsigned long long>(m.seed), on_off(m.shuffle).c_str());
  std::printf("saved layout: tp %d, pp %d, dp %d, zero %d, virtual stages %d, sequence parallel %s, "
              "schedule %s, precision %s\n",
              s.tp, s.pp, s.dp, s.zero, s.virtual_stages, on_off(s.sequence_parallel).c_str(),
              s.schedule.c_str(), s.precision.c_str());
  std::printf("encryption: %s\n", m.encryption.c_str());
  print_counts(m);
  std::printf("model: %s\n", m.model_json.c_str());
  return 0;
}

int verify(const std::string& dir, const std::string& key_file) {
  require_key(dir, read_manifest(dir), key_file);
  const qj::VerifyReport report = qj::verify_checkpoint(dir, key_file);
  for (const std::string& problem : report.problems) std::printf("bad: %s\n", problem.c_str());
  if (report.ok()) {
    std::printf("ok: %zu chunks in %zu files verified\n", report.chunks, report.files);
    return 0;
  }
  std::printf("damaged: %zu problems in %s (%zu chunks in %zu files)\n", report.problems.size(), dir.c_str(),
              report.chunks, report.files);
  return kExitDamaged;
}

int export_weights(const std::string& dir, const std::string& key_file, const std::string& output) {
  const qj::Manifest m = read_manifest(dir);
  require_key(dir, m, key_file);
  qj::CheckpointReader reader(dir, key_file);
  const qj::ExportSummary summary = qj::export_checkpoint_weights(reader, output);
  std::printf("wrote %s: %zu tensors, %llu parameters, %llu bytes (the weights of step %lld)\n", output.c_str(),
              summary.tensors, static_cast<unsigned long long>(summary.parameters),
              static_cast<unsigned long long>(summary.file_bytes), static_cast<long long>(m.step));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse_args(argc, argv);
    const std::string dir = resolve_checkpoint(args.dir);
    if (args.command == "info") return info(dir);
    if (args.command == "verify") return verify(dir, args.key_file);
    return export_weights(dir, args.key_file, args.output);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return qj::kExitBadInput;
  }
}
