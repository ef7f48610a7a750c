// Files written so that kill -9 at any moment leaves either the old content or the new, never a
// torn mix: write a temp file beside the target, fsync it, rename over the target, fsync the dir.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace vitscale {

// kMachineCrash: the new content also survives a crash or power loss of the machine once this
// returns (fsync of the file and of its directory). kProcessCrash skips both fsyncs: kill -9 of
// any process still leaves old or new content, since the kernel keeps what was written.
enum class Durability { kMachineCrash, kProcessCrash };

Status WriteFileAtomically(const std::string& path, std::string_view content, int mode = 0644,
                           Durability durability = Durability::kMachineCrash);

// Reads a whole file; kNotFound when it does not exist, kInvalidArgument for a directory.
Expected<std::string> ReadFile(const std::string& path);

// A bearer token kept in a file (the coordinator's <state dir>/token): the file's content
// without surrounding white space; kInvalidArgument when nothing is left.
Expected<std::string> ReadTokenFile(const std::string& path);

// fsyncs the directory holding `path`, so that a rename into it survives a crash.
Status SyncParentDirectory(const std::string& path);

}  // namespace vitscale
