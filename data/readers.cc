#include "data/readers.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "common/names.h"

namespace vitscale::data {
namespace {

namespace fs = std::filesystem;

std::string Plural(size_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool IsImageFileName(const fs::path& path) {
  std::string ext = Lower(path.extension().string());
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

Expected<std::vector<std::string>> SortedEntries(const std::string& dir, bool directories) {
  std::error_code error;
  std::vector<std::string> names;
  fs::directory_iterator it(dir, error);
  if (error) return IOError("cannot list " + dir + ": " + error.message());
  for (const fs::directory_entry& entry : it) {
    bool is_dir = entry.is_directory(error);
    if (directories ? is_dir : (!is_dir && IsImageFileName(entry.path()))) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

Expected<std::string> ReadMaybeGzipFile(const std::string& path) {
  std::error_code error;
  if (!fs::exists(path, error)) return NotFound(path + ": no such file");
  if (fs::is_directory(path, error)) return InvalidArgument(path + " is a directory, not a file");
  // gzread passes data that is not gzip through unchanged, so one path reads both.
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) return IOError(path + ": cannot open: " + std::strerror(errno));
  gzbuffer(file, 1 << 20);
  std::string out;
  char chunk[1 << 16];
  while (true) {
    int n = gzread(file, chunk, sizeof(chunk));
    if (n < 0) {
      int code = 0;
      std::string message = gzerror(file, &code);
      gzclose(file);
      return Corruption(path + ": damaged gzip data: " + message);
    }
    if (n == 0) break;
    out.append(chunk, static_cast<size_t>(n));
  }
  int code = 0;
  const char* message = gzerror(file, &code);
  if (code != Z_OK && code != Z_BUF_ERROR) {
    std::string text = message;
    gzclose(file);
    return Corruption(path + ": damaged gzip data: " + text);
  }
  // A gzip stream cut short ends without error from gzread; gzclose_r reports it.
  if (gzclose(file) == Z_BUF_ERROR) {
    return Corruption(path + ": truncated gzip data (the stream ends early)");
  }
  return out;
}

Expected<IdxArray> ReadIdxFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadMaybeGzipFile(path));
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  if (bytes.size() < 4 || p[0] != 0 || p[1] != 0) {
    return Corruption(path + ": not an IDX file (its first two bytes must be 0)");
  }
  if (p[2] != 0x08) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x", p[2]);
    return Corruption(path + ": IDX element type " + hex +
                      " is not supported; only unsigned bytes (0x08) are");
  }
  int rank = p[3];
  if (rank == 0 || bytes.size() < 4 + 4 * static_cast<size_t>(rank)) {
    return Corruption(path + ": truncated IDX header (" + std::to_string(rank) + " dimensions)");
  }
  IdxArray array;
  size_t count = 1;
  for (int i = 0; i < rank; ++i) {
    array.dims.push_back(BigEndian32(p + 4 + 4 * i));
    count *= array.dims.back();
  }
  size_t header = 4 + 4 * static_cast<size_t>(rank);
  size_t have = bytes.size() - header;
  if (have < count) {
    return Corruption(path + ": truncated: the header promises " + std::to_string(count) +
                      " data bytes but the file holds " + std::to_string(have));
  }
  if (have > count) {
    return Corruption(path + ": " + std::to_string(have - count) +
                      " unexpected bytes after the data the header describes");
  }
  array.data.assign(p + header, p + header + count);
  return array;
}

Expected<Split> ReadIdxSplit(const std::string& images_path, const std::string& labels_path,
                             int num_classes) {
  ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(images_path));
  ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(labels_path));
  if (images.dims.size() != 3 && images.dims.size() != 4) {
    return Corruption(images_path +
                      ": an images file has 3 (N,H,W) or 4 (N,H,W,C) dimensions, "
                      "this one has " +
                      std::to_string(images.dims.size()));
  }
  int channels = images.dims.size() == 4 ? static_cast<int>(images.dims[3]) : 1;
  if (channels != 1 && channels != 3) {
    return Corruption(images_path + ": images have " + std::to_string(channels) +
                      " channels; 1 or 3 are supported");
  }
  if (labels.dims.size() != 1) {
    return Corruption(labels_path + ": a labels file has 1 dimension, this one has " +
                      std::to_string(labels.dims.size()));
  }
  if (labels.dims[0] != images.dims[0]) {
    return Corruption(labels_path + " holds " + Plural(labels.dims[0], "label") + " but " +
                      images_path + " holds " + Plural(images.dims[0], "image"));
  }
  std::vector<int32_t> label_values(labels.data.begin(), labels.data.end());
  for (size_t i = 0; i < label_values.size(); ++i) {
    if (label_values[i] >= num_classes) {
      return Corruption(labels_path + ": label " + std::to_string(label_values[i]) +
                        " of example " + std::to_string(i) + " is out of range [0, " +
                        std::to_string(num_classes) + ")");
    }
  }
  return Split::Dense(static_cast<int>(images.dims[1]), static_cast<int>(images.dims[2]), channels,
                      std::move(images.data), std::move(label_values), num_classes);
}

std::vector<std::string> CifarFileNames(CifarKind kind, bool train) {
  if (kind == CifarKind::kCifar100) return {train ? "train.bin" : "test.bin"};
  if (!train) return {"test_batch.bin"};
  return {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
          "data_batch_5.bin"};
}

Expected<Split> ReadCifarFiles(const std::vector<std::string>& paths, CifarKind kind) {
  constexpr int kSide = 32;
  constexpr size_t kPlane = kSide * kSide;
  const size_t label_bytes = kind == CifarKind::kCifar10 ? 1 : 2;
  const size_t record = label_bytes + 3 * kPlane;
  const int num_classes = kind == CifarKind::kCifar10 ? 10 : 100;
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(std::string bytes, ReadMaybeGzipFile(path));
    if (bytes.empty() || bytes.size() % record != 0) {
      return Corruption(path + ": truncated or not a " +
                        (kind == CifarKind::kCifar10 ? "CIFAR-10" : "CIFAR-100") +
                        " binary file: " + std::to_string(bytes.size()) +
                        " bytes is not a whole number of " + std::to_string(record) +
                        "-byte records");
    }
    size_t n = bytes.size() / record;
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    size_t base = labels.size();
    pixels.resize((base + n) * 3 * kPlane);
    for (size_t i = 0; i < n; ++i, p += record) {
      int label = p[label_bytes - 1];  // the fine label for CIFAR-100
      if (label >= num_classes) {
        return Corruption(path + ": label " + std::to_string(label) + " of record " +
                          std::to_string(i) + " is out of range [0, " +
                          std::to_string(num_classes) + ")");
      }
      labels.push_back(label);
      // CIFAR stores channel planes; Split holds HWC.
      const uint8_t* planes = p + label_bytes;
      uint8_t* out = pixels.data() + (base + i) * 3 * kPlane;
      for (size_t j = 0; j < kPlane; ++j) {
        out[3 * j] = planes[j];
        out[3 * j + 1] = planes[kPlane + j];
        out[3 * j + 2] = planes[2 * kPlane + j];
      }
    }
  }
  return Split::Dense(kSide, kSide, 3, std::move(pixels), std::move(labels), num_classes);
}

Expected<Split> ReadImageFolder(const std::string& dir, const std::vector<std::string>& class_names,
                                std::vector<std::string>* found_class_names) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return NotFound(dir + ": no such directory (an image folder has one subfolder per class)");
  }
  ASSIGN_OR_RETURN(std::vector<std::string> subfolders, SortedEntries(dir, true));
  std::vector<std::string> classes = class_names.empty() ? subfolders : class_names;
  if (classes.empty()) {
    return InvalidArgument(dir +
                           ": no class subfolders (put each class's images in "
                           "<dir>/<class name>/)");
  }
  for (const std::string& folder : subfolders) {
    if (std::find(classes.begin(), classes.end(), folder) == classes.end()) {
      return InvalidArgument(dir + ": class folder '" + folder +
                             "' is not one of the training classes" + DidYouMean(folder, classes));
    }
  }
  std::vector<std::string> paths;
  std::vector<int32_t> labels;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::string class_dir = (fs::path(dir) / classes[c]).string();
    if (!fs::is_directory(class_dir, error)) {
      if (!class_names.empty()) continue;  // a test split may lack a class
      return NotFound(class_dir + ": no such directory");
    }
    ASSIGN_OR_RETURN(std::vector<std::string> files, SortedEntries(class_dir, false));
    if (files.empty()) {
      return InvalidArgument(class_dir +
                             ": an empty class folder (no .jpg, .jpeg or .png images); add its "
                             "images or remove the folder");
    }
    for (const std::string& file : files) {
      paths.push_back((fs::path(class_dir) / file).string());
      labels.push_back(static_cast<int32_t>(c));
    }
  }
  if (paths.empty()) {
    return InvalidArgument(dir + ": no .jpg, .jpeg or .png images in its class subfolders");
  }
  if (found_class_names != nullptr) *found_class_names = classes;
  return Split::Files(std::move(paths), std::move(labels), static_cast<int>(classes.size()));
}

Expected<Split> ReadDigitsCsv(const std::string& path) {
  constexpr int kPixels = 64;
  constexpr int kClasses = 10;
  ASSIGN_OR_RETURN(std::string text, ReadMaybeGzipFile(path));
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
  size_t line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<double> values;
    const char* cursor = line.c_str();
    while (*cursor != '\0') {
      char* after = nullptr;
      double value = std::strtod(cursor, &after);
      if (after == cursor) {
        return Corruption(path + ":" + std::to_string(line_number) + ": not a number at column " +
                          std::to_string(values.size() + 1));
      }
      values.push_back(value);
      cursor = after;
      if (*cursor == ',') ++cursor;
    }
    if (values.size() != kPixels + 1) {
      return Corruption(path + ":" + std::to_string(line_number) + ": " +
                        std::to_string(values.size()) + " values; a digits row has " +
                        std::to_string(kPixels) + " pixels and a label");
    }
    for (int i = 0; i < kPixels; ++i) {
      if (!(values[i] >= 0 && values[i] <= 16)) {
        return Corruption(path + ":" + std::to_string(line_number) + ": pixel " +
                          std::to_string(i) + " is " + std::to_string(values[i]) +
                          ", outside 0..16");
      }
      pixels.push_back(static_cast<uint8_t>(std::lround(values[i] * 255.0 / 16.0)));
    }
    double label = values[kPixels];
    if (!(label >= 0 && label < kClasses) || label != std::floor(label)) {
      return Corruption(path + ":" + std::to_string(line_number) + ": label " +
                        std::to_string(label) + " is out of range [0, 10)");
    }
    labels.push_back(static_cast<int32_t>(label));
  }
  if (labels.empty()) return Corruption(path + ": no rows");
  return Split::Dense(8, 8, 1, std::move(pixels), std::move(labels), kClasses);
}

}  // namespace vitscale::data
