#include "data/shards.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/files.h"
#include "common/sha256.h"
#include "data/image_codec.h"
#include "data/readers.h"

namespace vitscale::data {
namespace {

namespace fs = std::filesystem;

constexpr size_t kBlock = 512;
constexpr const char* kPlanName = "pack-plan.json";
const char* const kSplitNames[2] = {"train", "test"};

std::string Join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

bool IsTempFile(const fs::path& path) {
  return path.filename().string().find(".tmp.") != std::string::npos;
}

// ---- tar (POSIX ustar) ----

void PutOctal(uint64_t value, char* field, size_t width) {
  // width - 1 digits and a NUL, as GNU and BSD tar write them.
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(value));
}

// Appends a regular-file member; returns the offset of its data. mtime 0, owner 0: the same
// input always gives the same bytes (and checksum).
uint64_t AppendMember(const std::string& name, std::string_view data, std::string* tar) {
  char header[kBlock] = {};
  std::memcpy(header, name.data(), std::min<size_t>(name.size(), 99));
  PutOctal(0644, header + 100, 8);
  PutOctal(0, header + 108, 8);
  PutOctal(0, header + 116, 8);
  PutOctal(data.size(), header + 124, 12);
  PutOctal(0, header + 136, 12);
  header[156] = '0';
  std::memcpy(header + 257, "ustar", 6);
  std::memcpy(header + 263, "00", 2);
  std::memset(header + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  std::snprintf(header + 148, 8, "%06o", sum);
  header[155] = ' ';
  tar->append(header, kBlock);
  const uint64_t offset = tar->size();
  tar->append(data.data(), data.size());
  tar->append((kBlock - data.size() % kBlock) % kBlock, '\0');
  return offset;
}

// Reads the member header at `block`: its name and size, after checking its checksum.
bool ParseHeader(const uint8_t* block, std::string* name, uint64_t* size) {
  unsigned stored = 0, sum = 0;
  for (size_t i = 0; i < kBlock; ++i) sum += (i >= 148 && i < 156) ? ' ' : block[i];
  if (std::sscanf(reinterpret_cast<const char*>(block) + 148, "%o", &stored) != 1) return false;
  if (stored != sum) return false;
  name->assign(reinterpret_cast<const char*>(block),
               strnlen(reinterpret_cast<const char*>(block), 100));
  char digits[13] = {};
  std::memcpy(digits, block + 124, 12);
  char* end = nullptr;
  *size = std::strtoull(digits, &end, 8);
  return end != digits;
}

// ---- packing ----

struct PackSplit {
  const Split* split = nullptr;
  const char* name = "";
  size_t shards = 0;
};

// The encoded bytes stored for example i, and whether they are a PNG.
Status EncodedSample(const Split& split, size_t i, std::string* bytes, bool* png) {
  if (split.dense()) {
    Image unused;
    ASSIGN_OR_RETURN(ImageView view, split.Get(i, &unused));
    Image image;
    image.height = view.height;
    image.width = view.width;
    image.channels = view.channels;
    image.pixels.assign(
        view.pixels, view.pixels + static_cast<size_t>(view.height) * view.width * view.channels);
    ASSIGN_OR_RETURN(*bytes, EncodePng(image));
    *png = true;
    return Status::Ok();
  }
  RETURN_IF_ERROR(split.ReadEncoded(i, bytes));
  *png = IsPng(*bytes);
  if (!*png && !IsJpeg(*bytes)) {
    return Corruption(split.source(i) +
                      ": neither a JPEG nor a PNG image (unknown leading bytes); remove it or "
                      "convert it before packing");
  }
  return Status::Ok();
}

// A finished shard's index, or nothing when the shard must be (re)written.
std::optional<ShardIndex> FinishedShard(const std::string& dest, const std::string& stem,
                                        size_t samples) {
  Expected<std::string> bytes = ReadFile(Join(dest, stem + ".idx"));
  if (!bytes.ok()) return std::nullopt;
  Expected<ShardIndex> index = DecodeIndex(*bytes, stem + ".idx");
  if (!index.ok() || index->entries.size() != samples) return std::nullopt;
  std::error_code error;
  const uintmax_t tar_size = fs::file_size(Join(dest, stem + ".tar"), error);
  if (error || tar_size != index->tar_bytes) return std::nullopt;
  return std::move(index).value();
}

Status WriteShard(const Split& split, const std::string& dest, const std::string& stem,
                  size_t begin, size_t end, int64_t* bytes_written) {
  std::string tar;
  ShardIndex index;
  index.entries.reserve(end - begin);
  std::string bytes;
  for (size_t i = begin; i < end; ++i) {
    bool png = false;
    RETURN_IF_ERROR(EncodedSample(split, i, &bytes, &png));
    if (bytes.size() > UINT32_MAX) {
      return InvalidArgument(split.source(i) + ": images over 4 GiB cannot be packed");
    }
    const std::string key = SampleKey(i);
    IndexEntry entry;
    entry.offset = AppendMember(key + (png ? ".png" : ".jpg"), bytes, &tar);
    entry.size = static_cast<uint32_t>(bytes.size());
    entry.label = split.label(i);
    entry.png = png;
    AppendMember(key + ".cls", std::to_string(entry.label), &tar);
    index.entries.push_back(entry);
  }
  tar.append(2 * kBlock, '\0');  // the end-of-archive marker
  index.tar_bytes = tar.size();
  const std::string digest = Sha256Hex(tar);
  for (size_t i = 0; i < 32; ++i) {
    index.tar_sha256[i] = static_cast<uint8_t>(std::stoi(digest.substr(2 * i, 2), nullptr, 16));
  }
  // The tar first, then its index: an index on disk means its tar is complete.
  RETURN_IF_ERROR(WriteFileAtomically(Join(dest, stem + ".tar"), tar));
  RETURN_IF_ERROR(WriteFileAtomically(Join(dest, stem + ".idx"), EncodeIndex(index)));
  *bytes_written += static_cast<int64_t>(tar.size());
  return Status::Ok();
}

// What identifies a pack: the source, the settings and every sample's label (and file).
std::string PlanText(const Dataset& dataset, const std::string& source, int64_t shard_size) {
  // Digested a megabyte at a time: ImageNet-21k's list alone is about a gigabyte.
  std::string samples, digests;
  for (const Split* split : {&dataset.train, &dataset.test}) {
    for (size_t i = 0; i < split->size(); ++i) {
      samples += split->source(i) + "\t" + std::to_string(split->label(i)) + "\n";
      if (samples.size() > (1 << 20)) {
        digests += Sha256Hex(samples);
        samples.clear();
      }
    }
  }
  digests += Sha256Hex(samples);
  nlohmann::json plan = {{"source", source},
                         {"shard_size", shard_size},
                         {"train_samples", dataset.train.size()},
                         {"test_samples", dataset.test.size()},
                         {"class_names", dataset.class_names},
                         {"samples_sha256", Sha256Hex(digests)}};
  return plan.dump(1) + "\n";
}

Expected<ShardSamples> LoadShardSamples(const std::string& dir, const char* split_name,
                                        const SplitManifest& split, int num_classes,
                                        std::vector<int32_t>* labels) {
  ShardSamples samples;
  samples.dir = dir;
  samples.first_sample.push_back(0);
  for (const ShardInfo& shard : split.shards) {
    const std::string index_path = Join(dir, shard.index);
    const std::string tar_path = Join(dir, shard.tar);
    Expected<std::string> bytes = ReadFile(index_path);
    if (!bytes.ok()) {
      if (bytes.status().code() != StatusCode::kNotFound) return bytes.status();
      return NotFound(index_path + ": missing index of shard " + shard.tar +
                      " (repack with `vitscale data pack`, or see `vitscale data check " + dir +
                      "`)");
    }
    ASSIGN_OR_RETURN(ShardIndex index, DecodeIndex(*bytes, index_path));
    if (static_cast<int64_t>(index.entries.size()) != shard.samples ||
        static_cast<int64_t>(index.tar_bytes) != shard.tar_bytes) {
      return Corruption(index_path + " describes " + std::to_string(index.entries.size()) +
                        " samples in " + std::to_string(index.tar_bytes) +
                        " bytes; the manifest says " + std::to_string(shard.samples) + " in " +
                        std::to_string(shard.tar_bytes));
    }
    std::error_code error;
    const uintmax_t size = fs::file_size(tar_path, error);
    if (error) return NotFound(tar_path + ": missing shard (" + error.message() + ")");
    if (static_cast<int64_t>(size) != shard.tar_bytes) {
      return Corruption(tar_path + ": truncated or damaged shard: " + std::to_string(size) +
                        " bytes, the manifest says " + std::to_string(shard.tar_bytes) +
                        " (`vitscale data check " + dir + "`)");
    }
    for (size_t j = 0; j < index.entries.size(); ++j) {
      const IndexEntry& e = index.entries[j];
      if (e.label < 0 || e.label >= num_classes) {
        return Corruption(tar_path + " sample " + std::to_string(j) + " (key " +
                          SampleKey(samples.block.size()) + "): label " + std::to_string(e.label) +
                          " is out of range [0, " + std::to_string(num_classes) + ")");
      }
      samples.block.push_back(static_cast<uint32_t>(e.offset / kBlock));
      samples.bytes.push_back(e.size);
      labels->push_back(e.label);
    }
    samples.tars.push_back(shard.tar);
    samples.first_sample.push_back(samples.block.size());
  }
  (void)split_name;
  return samples;
}

// Runs fn(k) for k in [0, n) on `threads` threads; returns the first error by k.
Status ParallelFor(size_t n, int threads, const std::function<Status(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<Status> statuses(n);
  auto work = [&] {
    while (!failed.load()) {
      const size_t k = next++;
      if (k >= n) return;
      statuses[k] = fn(k);
      if (!statuses[k].ok()) failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, threads); ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  for (const Status& s : statuses) RETURN_IF_ERROR(s);
  return Status::Ok();
}

}  // namespace

Expected<Dataset> LoadPacked(const std::string& dir, const std::string& reference) {
  ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(dir));
  Dataset dataset;
  dataset.reference = reference;
  dataset.num_classes = manifest.num_classes;
  dataset.class_names = manifest.class_names;
  dataset.height = manifest.height;
  dataset.width = manifest.width;
  dataset.channels = manifest.channels;
  if (manifest.mean) dataset.mean = *manifest.mean;
  if (manifest.std) dataset.std = *manifest.std;
  const SplitManifest* splits[2] = {&manifest.train, &manifest.test};
  Split* outs[2] = {&dataset.train, &dataset.test};
  for (int s = 0; s < 2; ++s) {
    std::vector<int32_t> labels;
    ASSIGN_OR_RETURN(ShardSamples samples, LoadShardSamples(dir, kSplitNames[s], *splits[s],
                                                            manifest.num_classes, &labels));
    *outs[s] = Split::Shards(std::move(samples), std::move(labels), manifest.num_classes);
  }
  return dataset;
}

Expected<Dataset> LoadPackSource(const std::string& source, const DataRoots& roots) {
  std::error_code error;
  if (!fs::is_directory(source, error)) {
    if (!source.empty() && (source[0] == '/' || source[0] == '.')) {
      return NotFound(source + ": no such directory (SRC is an image folder or a dataset name)");
    }
    return LoadDataset(source, roots);
  }
  Dataset dataset;
  dataset.reference = source;
  std::string train_dir = Join(source, "train");
  std::string test_dir = Join(source, "test");
  if (!fs::is_directory(test_dir, error)) test_dir = Join(source, "val");
  if (!fs::is_directory(train_dir, error)) {
    // The directory's own subfolders are the classes: one (training) split.
    train_dir = source;
    test_dir.clear();
  }
  ASSIGN_OR_RETURN(dataset.train, ReadImageFolder(train_dir, {}, &dataset.class_names));
  dataset.num_classes = static_cast<int>(dataset.class_names.size());
  if (!test_dir.empty() && fs::is_directory(test_dir, error)) {
    ASSIGN_OR_RETURN(dataset.test, ReadImageFolder(test_dir, dataset.class_names, nullptr));
  } else {
    dataset.test = Split::Files({}, {}, dataset.num_classes);
  }
  return dataset;
}

Expected<PackResult> PackDataset(const Dataset& dataset, const std::string& source,
                                 const std::string& dest, const PackOptions& options) {
  if (options.shard_size <= 0) {
    return InvalidArgument("shard size must be positive, not " +
                           std::to_string(options.shard_size));
  }
  std::error_code error;
  fs::create_directories(dest, error);
  if (error) return IOError("cannot create " + dest + ": " + error.message());
  if (fs::exists(Join(dest, kManifestName), error)) {
    return AlreadyExists(dest + " already holds a packed dataset (" + kManifestName +
                         "); remove it or pack into another directory");
  }
  // The plan fixes what this directory is a pack of, so a resumed run cannot mix sources.
  const std::string plan = PlanText(dataset, source, options.shard_size);
  const std::string plan_path = Join(dest, kPlanName);
  Expected<std::string> previous = ReadFile(plan_path);
  if (previous.ok()) {
    if (*previous != plan) {
      return FailedPrecondition(dest +
                                " holds an unfinished pack of another source or with "
                                "other settings (" +
                                plan_path + "); remove " + dest +
                                " or pack into another directory");
    }
  } else {
    for (const fs::directory_entry& entry : fs::directory_iterator(dest, error)) {
      if (IsTempFile(entry.path())) continue;
      return FailedPrecondition(dest + " is not empty (it holds " +
                                entry.path().filename().string() +
                                "); pack into an empty or new directory");
    }
    RETURN_IF_ERROR(WriteFileAtomically(plan_path, plan));
  }
  // Temp files of a killed run (WriteFileAtomically's "<name>.tmp.<pid>") are redone anyway.
  for (const fs::directory_entry& entry : fs::directory_iterator(dest, error)) {
    if (IsTempFile(entry.path())) fs::remove(entry.path(), error);
  }

  struct Work {
    const Split* split;
    const char* split_name;
    size_t shard, begin, end;
  };
  std::vector<Work> work;
  const Split* splits[2] = {&dataset.train, &dataset.test};
  const size_t shard_size = static_cast<size_t>(options.shard_size);
  for (int s = 0; s < 2; ++s) {
    for (size_t begin = 0, k = 0; begin < splits[s]->size(); begin += shard_size, ++k) {
      work.push_back(
          {splits[s], kSplitNames[s], k, begin, std::min(splits[s]->size(), begin + shard_size)});
    }
  }
  PackResult result;
  result.progress.shards_total = static_cast<int64_t>(work.size());
  result.progress.samples_total = static_cast<int64_t>(dataset.train.size() + dataset.test.size());
  std::mutex mutex;
  std::vector<ShardIndex> indexes(work.size());
  RETURN_IF_ERROR(ParallelFor(work.size(), options.threads, [&](size_t w) -> Status {
    const Work& job = work[w];
    const std::string stem = ShardStem(job.split_name, job.shard);
    std::optional<ShardIndex> finished = FinishedShard(dest, stem, job.end - job.begin);
    int64_t written = 0;
    if (!finished) {
      RETURN_IF_ERROR(WriteShard(*job.split, dest, stem, job.begin, job.end, &written));
      finished = FinishedShard(dest, stem, job.end - job.begin);
      if (!finished) return Internal(stem + ": the shard just written does not read back");
    }
    std::lock_guard<std::mutex> lock(mutex);
    indexes[w] = std::move(*finished);
    PackProgress& p = result.progress;
    p.samples_done += static_cast<int64_t>(job.end - job.begin);
    ++p.shards_done;
    if (written == 0) ++p.shards_kept;
    p.bytes_written += written;
    if (options.progress) options.progress(p);
    return Status::Ok();
  }));

  Manifest& m = result.manifest;
  m.source = source;
  m.shard_size = options.shard_size;
  m.num_classes = dataset.num_classes;
  m.class_names = dataset.class_names;
  if (dataset.height > 0) {
    m.height = dataset.height;
    m.width = dataset.width;
    m.channels = dataset.channels;
    m.mean = dataset.mean;
    m.std = dataset.std;
  }
  for (size_t w = 0; w < work.size(); ++w) {
    const std::string stem = ShardStem(work[w].split_name, work[w].shard);
    SplitManifest& split = work[w].split == &dataset.train ? m.train : m.test;
    ShardInfo info;
    info.tar = stem + ".tar";
    info.index = stem + ".idx";
    info.samples = static_cast<int64_t>(indexes[w].entries.size());
    info.tar_bytes = static_cast<int64_t>(indexes[w].tar_bytes);
    info.tar_sha256 = HexBytes(indexes[w].tar_sha256.data(), 32);
    const std::string index_bytes = EncodeIndex(indexes[w]);
    info.index_bytes = static_cast<int64_t>(index_bytes.size());
    info.index_sha256 = Sha256Hex(index_bytes);
    split.samples += info.samples;
    split.shards.push_back(std::move(info));
  }
  RETURN_IF_ERROR(WriteFileAtomically(Join(dest, kManifestName), EncodeManifest(m)));
  fs::remove(plan_path, error);  // finished: the manifest is the record now
  return result;
}

Expected<CheckReport> CheckPacked(const std::string& dir, const CheckOptions& options) {
  ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(dir));
  struct Work {
    const ShardInfo* shard;
    uint64_t first_sample;
  };
  std::vector<Work> work;
  for (const SplitManifest* split : {&manifest.train, &manifest.test}) {
    uint64_t first = 0;
    for (const ShardInfo& shard : split->shards) {
      work.push_back({&shard, first});
      first += static_cast<uint64_t>(shard.samples);
    }
  }
  CheckReport report;
  report.shards = static_cast<int64_t>(work.size());
  report.samples = manifest.train.samples + manifest.test.samples;
  std::mutex mutex;
  int64_t done = 0;
  auto problem = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex);
    if (report.problems.size() < options.max_problems) report.problems.push_back(line);
  };
  Status ran = ParallelFor(work.size(), options.threads, [&](size_t w) -> Status {
    const ShardInfo& shard = *work[w].shard;
    const std::string tar_path = Join(dir, shard.tar);
    const std::string index_path = Join(dir, shard.index);
    auto finish = [&] {
      std::lock_guard<std::mutex> lock(mutex);
      ++done;
      if (options.progress) options.progress(done, report.shards);
      return Status::Ok();
    };
    Expected<std::string> index_bytes = ReadFile(index_path);
    if (!index_bytes.ok()) {
      problem(index_path + ": missing or unreadable index: " + index_bytes.status().message());
      return finish();
    }
    if (static_cast<int64_t>(index_bytes->size()) != shard.index_bytes ||
        Sha256Hex(*index_bytes) != shard.index_sha256) {
      problem(index_path + ": does not match its checksum in the manifest");
    }
    Expected<ShardIndex> index = DecodeIndex(*index_bytes, index_path);
    if (!index.ok()) {
      problem(index.status().message());
      return finish();
    }
    Expected<std::string> tar = ReadFile(tar_path);
    if (!tar.ok()) {
      problem(tar_path + ": missing or unreadable shard: " + tar.status().message());
      return finish();
    }
    if (static_cast<int64_t>(tar->size()) != shard.tar_bytes) {
      problem(tar_path + ": " + std::to_string(tar->size()) + " bytes, the manifest says " +
              std::to_string(shard.tar_bytes) + " (truncated or damaged shard)");
    } else if (Sha256Hex(*tar) != shard.tar_sha256) {
      problem(tar_path + ": SHA-256 differs from the manifest's (damaged shard)");
    }
    if (HexBytes(index->tar_sha256.data(), 32) != shard.tar_sha256 ||
        static_cast<int64_t>(index->tar_bytes) != shard.tar_bytes ||
        static_cast<int64_t>(index->entries.size()) != shard.samples) {
      problem(index_path + ": describes another version of " + shard.tar +
              " than the manifest (size, checksum or sample count)");
    }
    const auto* bytes = reinterpret_cast<const uint8_t*>(tar->data());
    const size_t size = tar->size();
    size_t pos = 0;
    for (size_t j = 0; j < index->entries.size(); ++j) {
      const IndexEntry& e = index->entries[j];
      const std::string key = SampleKey(work[w].first_sample + j);
      const std::string where = tar_path + " sample " + std::to_string(j) + " (key " + key + ")";
      std::string name;
      uint64_t member_size = 0;
      if (pos + kBlock > size || !ParseHeader(bytes + pos, &name, &member_size)) {
        problem(where + ": no valid tar header at byte " + std::to_string(pos) +
                " (truncated or damaged shard)");
        break;
      }
      const std::string expected_name = key + (e.png ? ".png" : ".jpg");
      if (name != expected_name || pos + kBlock != e.offset || member_size != e.size) {
        problem(where + ": the index says " + expected_name + " of " + std::to_string(e.size) +
                " bytes at " + std::to_string(e.offset) + ", the shard holds " + name + " of " +
                std::to_string(member_size) + " bytes at " + std::to_string(pos + kBlock));
        break;
      }
      pos += kBlock + (member_size + kBlock - 1) / kBlock * kBlock;
      if (pos + kBlock > size || !ParseHeader(bytes + pos, &name, &member_size) ||
          name != key + ".cls" || pos + kBlock + member_size > size) {
        problem(where + ": its label member " + key + ".cls is missing or damaged");
        break;
      }
      const std::string label_text(tar->data() + pos + kBlock, member_size);
      if (label_text != std::to_string(e.label)) {
        problem(where + ": the shard's label '" + label_text + "' differs from the index's " +
                std::to_string(e.label));
      }
      if (e.label < 0 || e.label >= manifest.num_classes) {
        problem(where + ": label " + std::to_string(e.label) + " is out of range [0, " +
                std::to_string(manifest.num_classes) + ")");
      }
      if (options.decode && e.offset + e.size <= size) {
        Expected<Image> image =
            DecodeImage(std::string_view(tar->data() + e.offset, e.size), where);
        if (!image.ok()) problem(image.status().message());
      }
      pos += kBlock + (member_size + kBlock - 1) / kBlock * kBlock;
    }
    return finish();
  });
  RETURN_IF_ERROR(ran);
  std::sort(report.problems.begin(), report.problems.end());
  return report;
}

}  // namespace vitscale::data
