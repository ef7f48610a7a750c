#include "trainer/checkpoint_store.h"

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <system_error>

#include "common/files.h"
#include "common/sha256.h"

namespace vitscale::trainer {
namespace {

namespace fs = std::filesystem;

constexpr char kManifest[] = "MANIFEST.json";
constexpr char kStepPrefix[] = "step-";
constexpr char kPartialPrefix[] = ".partial-";

std::string StepName(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "%s%010" PRId64, kStepPrefix, step);
  return name;
}

// The step of a "step-NNNNNNNNNN" directory name, or -1.
int64_t ParseStepName(const std::string& name) {
  const size_t prefix = sizeof(kStepPrefix) - 1;
  if (name.size() <= prefix || name.compare(0, prefix, kStepPrefix) != 0) return -1;
  int64_t step = 0;
  for (size_t i = prefix; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

Status FsError(const std::string& what, const std::string& path, const std::error_code& ec) {
  return IOError(what + " " + path + ": " + ec.message());
}

// What Save writes and ParseManifest accepts as a blob's name: a plain file name of the
// checkpoint's directory, so that no manifest can name a file elsewhere.
bool IsBlobName(const std::string& name) {
  return !name.empty() && name.size() <= 255 && name[0] != '.' && name != kManifest &&
         name.find_first_of(std::string("/\0", 2)) == std::string::npos;
}

bool IsSha256Hex(const nlohmann::json& value) {
  if (!value.is_string()) return false;
  const std::string& text = value.get_ref<const std::string&>();
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A name from a manifest, fit for a message: quoted, escaped, at most 64 bytes of it.
std::string Quoted(const std::string& name) {
  return nlohmann::json(name.substr(0, 64))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

Expected<CheckpointStore> CheckpointStore::Open(const std::string& dir, int keep_last) {
  if (keep_last < 1) return InvalidArgument("checkpoint keep_last must be >= 1");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return FsError("cannot create checkpoint directory", dir, ec);
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind(kPartialPrefix, 0) == 0) {
      fs::remove_all(entry.path(), ec);
    }
  }
  if (ec) return FsError("cannot list checkpoint directory", dir, ec);
  return CheckpointStore(dir, keep_last);
}

std::string CheckpointStore::PathOf(int64_t step) const {
  return (fs::path(dir_) / StepName(step)).string();
}

std::vector<int64_t> CheckpointStore::Steps() const {
  std::vector<int64_t> steps;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir_, ec)) {
    int64_t step = ParseStepName(entry.path().filename().string());
    if (step >= 0 && entry.is_directory(ec)) steps.push_back(step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

Expected<std::string> CheckpointStore::Save(int64_t step,
                                            const std::map<std::string, std::string>& blobs) {
  if (step < 0) return InvalidArgument("checkpoint step must be >= 0");
  const std::string final_path = PathOf(step);
  const std::string partial =
      (fs::path(dir_) / (kPartialPrefix + StepName(step) + "-" + std::to_string(::getpid())))
          .string();
  std::error_code ec;
  fs::remove_all(partial, ec);
  fs::create_directory(partial, ec);
  if (ec) return FsError("cannot create", partial, ec);

  nlohmann::json manifest = {{"step", step}, {"blobs", nlohmann::json::object()}};
  for (const auto& [name, bytes] : blobs) {
    if (!IsBlobName(name)) {
      fs::remove_all(partial, ec);
      return InvalidArgument("bad checkpoint blob name '" + name + "'");
    }
    Status written = WriteFileAtomically((fs::path(partial) / name).string(), bytes);
    if (!written.ok()) {
      fs::remove_all(partial, ec);
      return written;
    }
    manifest["blobs"][name] = {{"bytes", bytes.size()}, {"sha256", Sha256Hex(bytes)}};
  }
  const std::string manifest_text = manifest.dump(2);
  Status written = WriteFileAtomically((fs::path(partial) / kManifest).string(), manifest_text);
  if (!written.ok()) {
    fs::remove_all(partial, ec);
    return written;
  }
  // rename() cannot replace a non-empty directory: move an old checkpoint of this step aside.
  if (fs::exists(final_path, ec)) {
    const std::string old = partial + ".old";
    fs::rename(final_path, old, ec);
    if (ec) return FsError("cannot move aside", final_path, ec);
    fs::remove_all(old, ec);
  }
  fs::rename(partial, final_path, ec);
  if (ec) return FsError("cannot rename checkpoint into", final_path, ec);
  RETURN_IF_ERROR(SyncParentDirectory(final_path));

  std::vector<int64_t> steps = Steps();
  for (size_t i = 0; i + static_cast<size_t>(keep_last_) < steps.size(); ++i) {
    fs::remove_all(PathOf(steps[i]), ec);
    if (ec) return FsError("cannot delete old checkpoint", PathOf(steps[i]), ec);
  }
  return Sha256Hex(manifest_text);
}

Expected<Manifest> ParseManifest(std::string_view text, const std::string& path) {
  auto refuse = [&path](const std::string& what) {
    return Corruption(path + " is not a valid manifest: " + what);
  };
  const nlohmann::json manifest = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (manifest.is_discarded()) return refuse("not JSON");
  if (!manifest.is_object()) return refuse("not a JSON object");
  // Integers are checked for their kind before they are read: a number too large for 64 bits
  // parses as a double, and converting it would be undefined.
  auto step = manifest.find("step");
  if (step == manifest.end() || !step->is_number_unsigned() ||
      step->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return refuse("'step' must be an integer >= 0");
  }
  auto blobs = manifest.find("blobs");
  if (blobs == manifest.end() || !blobs->is_object()) return refuse("'blobs' must be an object");
  Manifest parsed;
  parsed.step = step->get<int64_t>();
  for (const auto& [name, entry] : blobs->items()) {
    if (!IsBlobName(name)) {
      return refuse("blob name " + Quoted(name) + " is not a plain file name");
    }
    auto bytes = entry.is_object() ? entry.find("bytes") : entry.end();
    auto sha256 = entry.is_object() ? entry.find("sha256") : entry.end();
    if (bytes == entry.end() || !bytes->is_number_unsigned()) {
      return refuse("blob " + Quoted(name) + " needs 'bytes', an integer >= 0");
    }
    if (sha256 == entry.end() || !IsSha256Hex(*sha256)) {
      return refuse("blob " + Quoted(name) + " needs 'sha256', 64 hex digits");
    }
    parsed.blobs[name] = {bytes->get<uint64_t>(), sha256->get<std::string>()};
  }
  return parsed;
}

Expected<Checkpoint> CheckpointStore::LoadVerified(int64_t step) const {
  Checkpoint checkpoint;
  checkpoint.step = step;
  checkpoint.path = PathOf(step);
  const std::string manifest_path = (fs::path(checkpoint.path) / kManifest).string();
  ASSIGN_OR_RETURN(std::string manifest_text, ReadFile(manifest_path));
  ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(manifest_text, manifest_path));
  if (manifest.step != step) {
    return Corruption(manifest_path + " names step " + std::to_string(manifest.step));
  }
  for (const auto& [name, blob] : manifest.blobs) {
    const std::string blob_path = (fs::path(checkpoint.path) / name).string();
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(blob_path));
    if (bytes.size() != blob.bytes) {
      return Corruption(blob_path + " has " + std::to_string(bytes.size()) +
                        " bytes, manifest says " + std::to_string(blob.bytes) + " (truncated)");
    }
    if (Sha256Hex(bytes) != blob.sha256) return Corruption(blob_path + " fails its SHA-256 check");
    checkpoint.blobs.emplace(name, std::move(bytes));
  }
  return checkpoint;
}

Expected<Checkpoint> CheckpointStore::LoadNewest(std::vector<std::string>* warnings) const {
  std::vector<int64_t> steps = Steps();
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    Expected<Checkpoint> checkpoint = LoadVerified(*it);
    if (checkpoint.ok()) return checkpoint;
    if (warnings) {
      warnings->push_back("skipping checkpoint " + PathOf(*it) + ": " +
                          checkpoint.status().message());
    }
  }
  return NotFound("no valid checkpoint in " + dir_);
}

}  // namespace vitscale::trainer
