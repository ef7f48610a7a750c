#include "models/npy.h"

#include <zip.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/files.h"

namespace vitscale::models {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

// Finds `'key':` in a header dict literal and returns the text after the colon.
std::string_view ValueAfterKey(std::string_view header, std::string_view key) {
  const std::string quoted = "'" + std::string(key) + "'";
  size_t at = header.find(quoted);
  if (at == std::string_view::npos) return {};
  at = header.find(':', at + quoted.size());
  if (at == std::string_view::npos) return {};
  std::string_view rest = header.substr(at + 1);
  while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.front()))) {
    rest.remove_prefix(1);
  }
  return rest;
}

Expected<NpyDtype> ParseDescr(std::string_view descr, std::string_view what) {
  if (descr == "<f4") return NpyDtype::kFloat32;
  if (descr == "<f2") return NpyDtype::kFloat16;
  // numpy has no bfloat16; ml_dtypes arrays go through np.save as 2-byte voids.
  if (descr == "<V2" || descr == "|V2" || descr == "bfloat16" || descr == "<bfloat16") {
    return NpyDtype::kBFloat16;
  }
  return InvalidArgument(std::string(what) + ": dtype '" + std::string(descr) +
                         "' is not supported; convert the array to float32 ('<f4'), float16 "
                         "('<f2') or bfloat16");
}

std::string ZipErrorString(int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  return message;
}

struct ZipCloser {
  void operator()(zip_t* archive) const { zip_discard(archive); }
};

}  // namespace

const char* NpyDtypeName(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kFloat32:
      return "float32";
    case NpyDtype::kFloat16:
      return "float16";
    case NpyDtype::kBFloat16:
      return "bfloat16";
  }
  return "?";
}

int NpyItemSize(NpyDtype dtype) { return dtype == NpyDtype::kFloat32 ? 4 : 2; }

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

namespace {

// The header of a .npy file whose first bytes are `bytes`: the array without its data, and in
// *data_offset where the data starts.
Expected<NpyArray> ParseNpyHeader(std::string_view bytes, std::string_view what,
                                  size_t* data_offset) {
  const std::string where(what);
  if (bytes.size() < 10 || bytes.substr(0, kMagic.size()) != kMagic) {
    return Corruption(where + ": not a .npy array (no \\x93NUMPY magic)");
  }
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(bytes[i]); };
  const int major = byte(6);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = byte(8) | (byte(9) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return Corruption(where + ": .npy header is truncated");
    header_len = byte(8) | (byte(9) << 8) | (byte(10) << 16) | (size_t{byte(11)} << 24);
    header_start = 12;
  } else {
    return InvalidArgument(where + ": .npy format version " + std::to_string(major) +
                           " is not supported (1, 2 and 3 are)");
  }
  if (bytes.size() < header_start + header_len) {
    return Corruption(where + ": .npy header is truncated");
  }
  const std::string_view header = bytes.substr(header_start, header_len);

  NpyArray array;
  std::string_view descr = ValueAfterKey(header, "descr");
  if (descr.empty() || (descr.front() != '\'' && descr.front() != '"')) {
    return Corruption(where + ": .npy header has no 'descr' string");
  }
  const size_t descr_end = descr.find(descr.front(), 1);
  if (descr_end == std::string_view::npos) return Corruption(where + ": bad 'descr' in header");
  ASSIGN_OR_RETURN(array.dtype, ParseDescr(descr.substr(1, descr_end - 1), what));

  std::string_view fortran = ValueAfterKey(header, "fortran_order");
  if (fortran.substr(0, 4) == "True") {
    array.fortran_order = true;
  } else if (fortran.substr(0, 5) != "False") {
    return Corruption(where + ": .npy header has no 'fortran_order' True/False");
  }

  std::string_view shape = ValueAfterKey(header, "shape");
  if (shape.empty() || shape.front() != '(') {
    return Corruption(where + ": .npy header has no 'shape' tuple");
  }
  const size_t close = shape.find(')');
  if (close == std::string_view::npos) return Corruption(where + ": bad 'shape' in header");
  shape = shape.substr(1, close - 1);
  while (!shape.empty()) {
    while (!shape.empty() && (shape.front() == ' ' || shape.front() == ',')) shape.remove_prefix(1);
    if (shape.empty()) break;
    int64_t dim = 0;
    size_t digits = 0;
    while (digits < shape.size() && std::isdigit(static_cast<unsigned char>(shape[digits]))) {
      dim = dim * 10 + (shape[digits] - '0');
      if (dim > (int64_t{1} << 40)) return Corruption(where + ": absurd dimension in 'shape'");
      ++digits;
    }
    if (digits == 0) return Corruption(where + ": bad 'shape' in header");
    array.shape.push_back(dim);
    shape.remove_prefix(digits);
  }

  *data_offset = header_start + header_len;
  return array;
}

// The data bytes `array` needs against those a file holds. Dimensions are checked one by one
// while parsing, but their product can still overflow.
Status CheckDataSize(const NpyArray& array, uint64_t size, const std::string& where) {
  uint64_t expected = static_cast<uint64_t>(NpyItemSize(array.dtype));
  bool overflow = false;
  for (int64_t dim : array.shape) {
    overflow = overflow || __builtin_mul_overflow(expected, static_cast<uint64_t>(dim), &expected);
  }
  if (!overflow && size == expected) return Status::Ok();
  return Corruption(where + ": " + ShapeString(array.shape) + " " + NpyDtypeName(array.dtype) +
                    " needs " + (overflow ? "more than 2^64" : std::to_string(expected)) +
                    " data bytes, the file has " + std::to_string(size) + " (truncated?)");
}

}  // namespace

Expected<NpyArray> ParseNpy(std::string_view bytes, std::string_view what) {
  size_t data_offset = 0;
  ASSIGN_OR_RETURN(NpyArray array, ParseNpyHeader(bytes, what, &data_offset));
  const std::string_view data = bytes.substr(data_offset);
  RETURN_IF_ERROR(CheckDataSize(array, data.size(), std::string(what)));
  array.data.assign(data.data(), data.size());
  return array;
}

std::string SerializeNpy(const NpyArray& array) {
  const char* descr = array.dtype == NpyDtype::kFloat32   ? "<f4"
                      : array.dtype == NpyDtype::kFloat16 ? "<f2"
                                                          : "<V2";
  std::string header = std::string("{'descr': '") + descr +
                       "', 'fortran_order': " + (array.fortran_order ? "True" : "False") +
                       ", 'shape': " + ShapeString(array.shape) + ", }";
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out(kMagic);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out += array.data;
  return out;
}

namespace {

// Reads every member of the .npz at `path`: whole arrays, or with `headers_only` their headers
// (data left empty, its size still checked against the member's).
Expected<std::map<std::string, NpyArray>> ReadMembers(const std::string& path, bool headers_only) {
  int error_code = 0;
  std::unique_ptr<zip_t, ZipCloser> archive(
      zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &error_code));
  if (!archive) {
    if (error_code == ZIP_ER_NOENT) return NotFound(path + ": no such file");
    if (error_code == ZIP_ER_OPEN || error_code == ZIP_ER_READ) {
      return IOError(path + ": cannot read: " + ZipErrorString(error_code));
    }
    return Corruption(path + ": not a readable .npz (zip) archive: " + ZipErrorString(error_code) +
                      "; is the file complete?");
  }
  // A .npy header is a few hundred bytes; this bounds what a header-only read takes.
  constexpr zip_uint64_t kHeaderBytes = 1 << 16;
  std::map<std::string, NpyArray> arrays;
  const zip_int64_t entries = zip_get_num_entries(archive.get(), 0);
  for (zip_int64_t i = 0; i < entries; ++i) {
    zip_stat_t stat;
    if (zip_stat_index(archive.get(), i, 0, &stat) != 0 || !(stat.valid & ZIP_STAT_NAME) ||
        !(stat.valid & ZIP_STAT_SIZE)) {
      return Corruption(path + ": member " + std::to_string(i) +
                        " has no readable header: " + zip_strerror(archive.get()));
    }
    std::string key = stat.name;
    if (key.size() >= 4 && key.compare(key.size() - 4, 4, ".npy") == 0) key.resize(key.size() - 4);
    const std::string what = path + ": " + key;
    zip_file_t* file = zip_fopen_index(archive.get(), i, 0);
    if (file == nullptr) {
      return Corruption(what + ": cannot open member: " + zip_strerror(archive.get()));
    }
    // The size in the header is a claim: memory grows with the data actually read, so that a
    // small file cannot make the reader allocate gigabytes before it fails.
    const zip_uint64_t wanted = headers_only ? std::min(stat.size, kHeaderBytes) : stat.size;
    std::string bytes;
    constexpr zip_uint64_t kChunk = zip_uint64_t{1} << 20;
    zip_int64_t read = 0;
    while (bytes.size() < wanted) {
      const size_t before = bytes.size();
      bytes.resize(before + std::min<zip_uint64_t>(kChunk, wanted - before));
      read = zip_fread(file, bytes.data() + before, bytes.size() - before);
      bytes.resize(before + std::max<zip_int64_t>(read, 0));
      if (read <= 0) break;
    }
    std::string read_error = read < 0 ? zip_error_strerror(zip_file_get_error(file)) : "";
    zip_fclose(file);
    if (bytes.size() != wanted) {
      return Corruption(what + ": member is truncated or corrupt" +
                        (read_error.empty() ? std::string() : ": " + read_error));
    }
    NpyArray array;
    if (headers_only) {
      size_t data_offset = 0;
      ASSIGN_OR_RETURN(array, ParseNpyHeader(bytes, what, &data_offset));
      RETURN_IF_ERROR(CheckDataSize(array, stat.size - data_offset, what));
    } else {
      ASSIGN_OR_RETURN(array, ParseNpy(bytes, what));
    }
    arrays.emplace(std::move(key), std::move(array));
  }
  return arrays;
}

}  // namespace

Expected<std::map<std::string, NpyArray>> ReadNpz(const std::string& path) {
  return ReadMembers(path, /*headers_only=*/false);
}

Expected<std::map<std::string, std::vector<int64_t>>> ReadNpzShapes(const std::string& path) {
  ASSIGN_OR_RETURN(auto headers, ReadMembers(path, /*headers_only=*/true));
  std::map<std::string, std::vector<int64_t>> shapes;
  for (auto& [key, array] : headers) shapes.emplace(key, std::move(array.shape));
  return shapes;
}

Status WriteNpz(const std::string& path, const std::map<std::string, NpyArray>& arrays) {
  const std::string temp = path + ".tmp";
  std::remove(temp.c_str());
  int error_code = 0;
  std::unique_ptr<zip_t, ZipCloser> archive(
      zip_open(temp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error_code));
  if (!archive) return IOError(temp + ": cannot create: " + ZipErrorString(error_code));
  // libzip reads the sources at zip_close, so the serialised members must outlive it.
  std::vector<std::string> members;
  members.reserve(arrays.size());
  for (const auto& [key, array] : arrays) {
    members.push_back(SerializeNpy(array));
    zip_source_t* source =
        zip_source_buffer(archive.get(), members.back().data(), members.back().size(), 0);
    if (source == nullptr) return IOError(temp + ": " + zip_strerror(archive.get()));
    const zip_int64_t index =
        zip_file_add(archive.get(), (key + ".npy").c_str(), source, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      zip_source_free(source);
      return IOError(temp + ": cannot add " + key + ": " + zip_strerror(archive.get()));
    }
    zip_set_file_compression(archive.get(), index, ZIP_CM_STORE, 0);
  }
  if (zip_close(archive.get()) != 0) {
    const std::string message = zip_strerror(archive.get());
    std::remove(temp.c_str());
    return IOError(temp + ": cannot write: " + message);
  }
  archive.release();  // zip_close freed it
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string message = std::strerror(errno);
    std::remove(temp.c_str());
    return IOError("cannot rename " + temp + " to " + path + ": " + message);
  }
  return SyncParentDirectory(path);
}

}  // namespace vitscale::models
