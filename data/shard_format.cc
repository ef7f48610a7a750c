#include "data/shard_format.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/files.h"

namespace vitscale::data {
namespace {

using nlohmann::json;

constexpr char kIndexMagic[8] = {'V', 'S', 'I', 'D', 'X', '0', '0', '1'};
constexpr size_t kIndexHeader = 8 + 8 + 8 + 32;
constexpr size_t kIndexRecord = 4 + 4 + 4 + 4;  // offset / 512, size, label, flags

void Put64(uint64_t v, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void Put32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

json SplitJson(const SplitManifest& split) {
  json shards = json::array();
  for (const ShardInfo& s : split.shards) {
    shards.push_back({{"tar", s.tar},
                      {"index", s.index},
                      {"samples", s.samples},
                      {"tar_bytes", s.tar_bytes},
                      {"tar_sha256", s.tar_sha256},
                      {"index_bytes", s.index_bytes},
                      {"index_sha256", s.index_sha256}});
  }
  return {{"samples", split.samples}, {"shards", shards}};
}

// Reads `key` of `object` into *out, or says which field of `where` is wrong.
template <typename T>
Status Field(const json& object, const char* key, const std::string& where, T* out) {
  auto it = object.find(key);
  if (it == object.end()) return Corruption(where + ": missing field '" + key + "'");
  try {
    *out = it->get<T>();
  } catch (const json::exception&) {
    return Corruption(where + ": field '" + key + "' has the wrong type");
  }
  return Status::Ok();
}

Expected<SplitManifest> DecodeSplit(const json& object, const std::string& where) {
  if (!object.is_object()) return Corruption(where + " must be an object");
  SplitManifest split;
  RETURN_IF_ERROR(Field(object, "samples", where, &split.samples));
  auto shards = object.find("shards");
  if (shards == object.end() || !shards->is_array()) {
    return Corruption(where + ": missing the 'shards' list");
  }
  int64_t total = 0;
  for (size_t i = 0; i < shards->size(); ++i) {
    const json& s = (*shards)[i];
    const std::string at = where + ".shards[" + std::to_string(i) + "]";
    if (!s.is_object()) return Corruption(at + " must be an object");
    ShardInfo info;
    RETURN_IF_ERROR(Field(s, "tar", at, &info.tar));
    RETURN_IF_ERROR(Field(s, "index", at, &info.index));
    RETURN_IF_ERROR(Field(s, "samples", at, &info.samples));
    RETURN_IF_ERROR(Field(s, "tar_bytes", at, &info.tar_bytes));
    RETURN_IF_ERROR(Field(s, "tar_sha256", at, &info.tar_sha256));
    RETURN_IF_ERROR(Field(s, "index_bytes", at, &info.index_bytes));
    RETURN_IF_ERROR(Field(s, "index_sha256", at, &info.index_sha256));
    // File names stay inside the dataset directory.
    for (const std::string& name : {info.tar, info.index}) {
      if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') {
        return Corruption(at + ": '" + name + "' is not a plain file name");
      }
    }
    if (info.samples <= 0) return Corruption(at + ": a shard holds at least one sample");
    total += info.samples;
    split.shards.push_back(std::move(info));
  }
  if (total != split.samples) {
    return Corruption(where + ": its shards hold " + std::to_string(total) +
                      " samples, but 'samples' says " + std::to_string(split.samples));
  }
  return split;
}

}  // namespace

std::string HexBytes(const uint8_t* bytes, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 15]);
  }
  return out;
}

std::string ShardStem(const std::string& split, size_t shard) {
  char digits[16];
  std::snprintf(digits, sizeof(digits), "%06zu", shard);
  return split + "-" + digits;
}

std::string SampleKey(uint64_t sample) {
  char digits[24];
  std::snprintf(digits, sizeof(digits), "%09llu", static_cast<unsigned long long>(sample));
  return digits;
}

std::string EncodeManifest(const Manifest& m) {
  json out = {{"format", kShardFormatName},
              {"version", kShardFormatVersion},
              {"source", m.source},
              {"shard_size", m.shard_size},
              {"num_classes", m.num_classes},
              {"class_names", m.class_names},
              {"splits", {{"train", SplitJson(m.train)}, {"test", SplitJson(m.test)}}}};
  if (m.height > 0) {
    out["image"] = {{"height", m.height}, {"width", m.width}, {"channels", m.channels}};
  }
  if (m.mean && m.std) {
    out["mean"] = *m.mean;
    out["std"] = *m.std;
  }
  return out.dump(1) + "\n";
}

Expected<Manifest> DecodeManifest(const std::string& text, const std::string& origin) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    return Corruption(origin + ": not valid JSON: " + e.what());
  }
  if (!doc.is_object() || doc.value("format", "") != kShardFormatName) {
    return Corruption(origin + ": not a vitscale packed-dataset manifest (\"format\" must be \"" +
                      kShardFormatName + "\")");
  }
  Manifest m;
  int version = 0;
  RETURN_IF_ERROR(Field(doc, "version", origin, &version));
  if (version != kShardFormatVersion) {
    return Corruption(origin + ": format version " + std::to_string(version) +
                      " is not supported (this vitscale reads version " +
                      std::to_string(kShardFormatVersion) + ")");
  }
  RETURN_IF_ERROR(Field(doc, "source", origin, &m.source));
  RETURN_IF_ERROR(Field(doc, "shard_size", origin, &m.shard_size));
  RETURN_IF_ERROR(Field(doc, "num_classes", origin, &m.num_classes));
  RETURN_IF_ERROR(Field(doc, "class_names", origin, &m.class_names));
  if (m.num_classes <= 0 || static_cast<size_t>(m.num_classes) != m.class_names.size()) {
    return Corruption(origin + ": num_classes " + std::to_string(m.num_classes) + " but " +
                      std::to_string(m.class_names.size()) + " class names");
  }
  if (doc.contains("image")) {
    const std::string where = origin + ": image";
    RETURN_IF_ERROR(Field(doc["image"], "height", where, &m.height));
    RETURN_IF_ERROR(Field(doc["image"], "width", where, &m.width));
    RETURN_IF_ERROR(Field(doc["image"], "channels", where, &m.channels));
  }
  if (doc.contains("mean") || doc.contains("std")) {
    std::array<float, 3> mean{}, std{};
    RETURN_IF_ERROR(Field(doc, "mean", origin, &mean));
    RETURN_IF_ERROR(Field(doc, "std", origin, &std));
    m.mean = mean;
    m.std = std;
  }
  const json& splits = doc.value("splits", json::object());
  if (!splits.contains("train") || !splits.contains("test")) {
    return Corruption(origin +
                      ": 'splits' needs 'train' and 'test' (an empty split has no shards)");
  }
  ASSIGN_OR_RETURN(m.train, DecodeSplit(splits["train"], origin + ": splits.train"));
  ASSIGN_OR_RETURN(m.test, DecodeSplit(splits["test"], origin + ": splits.test"));
  if (m.shard_size <= 0) return Corruption(origin + ": shard_size must be positive");
  return m;
}

Expected<Manifest> ReadManifest(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / kManifestName).string();
  Expected<std::string> text = ReadFile(path);
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) {
      return NotFound(path + ": no such file (is " + dir +
                      " a packed dataset? `vitscale data pack SRC " + dir + "` makes one)");
    }
    return text.status();
  }
  return DecodeManifest(*text, path);
}

std::string EncodeIndex(const ShardIndex& index) {
  std::string out(kIndexMagic, sizeof(kIndexMagic));
  Put64(index.entries.size(), &out);
  Put64(index.tar_bytes, &out);
  out.append(reinterpret_cast<const char*>(index.tar_sha256.data()), index.tar_sha256.size());
  for (const IndexEntry& e : index.entries) {
    Put32(static_cast<uint32_t>(e.offset / 512), &out);
    Put32(e.size, &out);
    Put32(static_cast<uint32_t>(e.label), &out);
    Put32(e.png ? 1 : 0, &out);
  }
  return out;
}

Expected<ShardIndex> DecodeIndex(const std::string& bytes, const std::string& origin) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  if (bytes.size() < kIndexHeader || std::memcmp(p, kIndexMagic, sizeof(kIndexMagic)) != 0) {
    return Corruption(origin + ": not a vitscale shard index (bad header)");
  }
  const uint64_t count = Get64(p + 8);
  if (bytes.size() != kIndexHeader + count * kIndexRecord) {
    return Corruption(origin + ": truncated or padded: " + std::to_string(bytes.size()) +
                      " bytes for " + std::to_string(count) + " samples (expected " +
                      std::to_string(kIndexHeader + count * kIndexRecord) + ")");
  }
  ShardIndex index;
  index.tar_bytes = Get64(p + 16);
  std::memcpy(index.tar_sha256.data(), p + 24, 32);
  index.entries.resize(count);
  const uint8_t* r = p + kIndexHeader;
  for (uint64_t i = 0; i < count; ++i, r += kIndexRecord) {
    IndexEntry& e = index.entries[i];
    e.offset = uint64_t{Get32(r)} * 512;
    e.size = Get32(r + 4);
    e.label = static_cast<int32_t>(Get32(r + 8));
    const uint32_t flags = Get32(r + 12);
    if (flags > 1 || e.offset + e.size > index.tar_bytes) {
      return Corruption(origin + ": sample " + std::to_string(i) +
                        " has an entry outside its tar (offset " + std::to_string(e.offset) +
                        ", size " + std::to_string(e.size) + ", tar " +
                        std::to_string(index.tar_bytes) + " bytes)");
    }
    e.png = flags == 1;
  }
  return index;
}

}  // namespace vitscale::data
