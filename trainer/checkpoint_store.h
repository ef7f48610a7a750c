// CheckpointStore: one job's checkpoints in one directory, each written atomically and checked
// on load. It stores named byte blobs and knows nothing of tensors (train_state.h turns a model
// and optimizer into blobs), so it is tested with plain bytes.
//
// Layout:   <dir>/step-0000001200/<blob name>...   plus MANIFEST.json naming every blob with its
//           size and SHA-256, and the step.
// Writing:  blobs go into <dir>/.partial-step-...-<pid>/ (each file fsynced), the manifest last,
//           then one rename() makes the checkpoint visible and the directory is fsynced. A kill -9
//           at any moment leaves a complete checkpoint or a .partial directory that Open removes.
// Loading:  the newest checkpoint whose manifest parses and whose every blob matches its size and
//           checksum; older ones are tried in turn, and each one skipped is reported as a warning.
// Keeping:  after each save, all but the newest keep_last checkpoints are deleted.
//
// One process (rank 0) writes a store; any number may read it. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vitscale::trainer {

struct Checkpoint {
  int64_t step = 0;
  std::string path;                          // the checkpoint's directory
  std::map<std::string, std::string> blobs;  // name -> bytes
};

// A checkpoint's MANIFEST.json: its step, and each blob's size and SHA-256 (hex).
struct ManifestBlob {
  uint64_t bytes = 0;
  std::string sha256;
};
struct Manifest {
  int64_t step = 0;
  std::map<std::string, ManifestBlob> blobs;
};

// Reads a manifest's text: an object with "step" (an integer >= 0) and "blobs", each a plain file
// name of the checkpoint's directory (as Save names them) mapped to {"bytes": an integer >= 0,
// "sha256": 64 lowercase hex digits}. Anything else is kCorruption naming `path` and the field.
// Unknown fields are ignored.
Expected<Manifest> ParseManifest(std::string_view text, const std::string& path);

class CheckpointStore {
 public:
  // Creates `dir` when missing and removes partial checkpoints left by a killed writer.
  // REQUIRES: keep_last >= 1.
  static Expected<CheckpointStore> Open(const std::string& dir, int keep_last);

  // Writes the checkpoint of `step` atomically, replacing one of the same step, then prunes.
  // Blob names are plain file names (no '/', not MANIFEST.json). Returns the SHA-256 of the
  // manifest, which names the checkpoint to the coordinator.
  Expected<std::string> Save(int64_t step, const std::map<std::string, std::string>& blobs);

  // The newest checkpoint that verifies; kNotFound when there is none. Each checkpoint skipped on
  // the way (torn, truncated, bad checksum) adds a line to *warnings.
  Expected<Checkpoint> LoadNewest(std::vector<std::string>* warnings) const;

  // Steps of the complete-looking checkpoint directories, oldest first (not verified).
  std::vector<int64_t> Steps() const;

  const std::string& dir() const { return dir_; }
  // The directory of `step`'s checkpoint.
  std::string PathOf(int64_t step) const;

 private:
  CheckpointStore(std::string dir, int keep_last) : dir_(std::move(dir)), keep_last_(keep_last) {}
  Expected<Checkpoint> LoadVerified(int64_t step) const;

  std::string dir_;
  int keep_last_ = 1;
};

}  // namespace vitscale::trainer
