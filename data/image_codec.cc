#include "data/image_codec.h"

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/files.h"

namespace vitscale::data {
namespace {

// libjpeg reports fatal errors through error_exit, which must not return: we longjmp back to
// the caller's frame. Only C objects and objects declared before setjmp live in those frames.
struct JpegError {
  jpeg_error_mgr manager;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void JpegErrorExit(j_common_ptr info) {
  auto* error = reinterpret_cast<JpegError*>(info->err);
  (*info->err->format_message)(info, error->message);
  longjmp(error->jump, 1);
}

// Warnings (e.g. extraneous bytes between markers) are not fatal, except a premature end of
// the data: libjpeg would fill the missing rows with gray, and a cut file is a corrupt one.
void JpegWarning(j_common_ptr info, int level) {
  if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF) (*info->err->error_exit)(info);
}

// Returns false and fills error->message on failure.
bool DecodeJpegInto(const unsigned char* data, unsigned long size, Image* out, JpegError* error) {
  jpeg_decompress_struct info;
  info.err = jpeg_std_error(&error->manager);
  error->manager.error_exit = JpegErrorExit;
  error->manager.emit_message = JpegWarning;
  if (setjmp(error->jump)) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, size);
  jpeg_read_header(&info, TRUE);
  if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
    std::snprintf(error->message, sizeof(error->message), "CMYK JPEG is not supported");
    jpeg_destroy_decompress(&info);
    return false;
  }
  info.out_color_space = info.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&info);
  out->height = static_cast<int>(info.output_height);
  out->width = static_cast<int>(info.output_width);
  out->channels = info.output_components;
  out->pixels.resize(static_cast<size_t>(out->height) * out->width * out->channels);
  size_t row_bytes = static_cast<size_t>(out->width) * out->channels;
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = out->pixels.data() + info.output_scanline * row_bytes;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return true;
}

// DecodeJpegRegion's work in the setjmp frame: only C objects and the caller's pointers.
bool DecodeRegionInto(const unsigned char* data, unsigned long size, const RegionChooser& choose,
                      DecodedRegion* out, JpegError* error) {
  jpeg_decompress_struct info;
  info.err = jpeg_std_error(&error->manager);
  error->manager.error_exit = JpegErrorExit;
  error->manager.emit_message = JpegWarning;
  if (setjmp(error->jump)) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, size);
  jpeg_read_header(&info, TRUE);
  if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
    std::snprintf(error->message, sizeof(error->message), "CMYK JPEG is not supported");
    jpeg_destroy_decompress(&info);
    return false;
  }
  out->full_height = static_cast<int>(info.image_height);
  out->full_width = static_cast<int>(info.image_width);
  int scale = 1, top = 0, left = 0, height = 0, width = 0;
  choose(out->full_height, out->full_width, &scale, &top, &left, &height, &width);
  info.out_color_space = info.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  info.scale_num = 1;
  info.scale_denom = static_cast<unsigned int>(scale);
  jpeg_start_decompress(&info);
  const int scaled_height = static_cast<int>(info.output_height);
  const int scaled_width = static_cast<int>(info.output_width);
  top = std::clamp(top, 0, scaled_height - 1);
  left = std::clamp(left, 0, scaled_width - 1);
  height = std::clamp(height, 1, scaled_height - top);
  width = std::clamp(width, 1, scaled_width - left);
  JDIMENSION x = static_cast<JDIMENSION>(left), w = static_cast<JDIMENSION>(width);
  // Widens the column range to whole blocks: x moves left, w grows.
  if (w < info.output_width) jpeg_crop_scanline(&info, &x, &w);
  if (top > 0) jpeg_skip_scanlines(&info, static_cast<JDIMENSION>(top));
  out->scale = scale;
  out->top = top;
  out->left = static_cast<int>(x);
  out->image.height = height;
  out->image.width = static_cast<int>(info.output_width);  // w after cropping
  out->image.channels = info.output_components;
  const size_t row_bytes = static_cast<size_t>(out->image.width) * out->image.channels;
  out->image.pixels.resize(row_bytes * height);
  for (int r = 0; r < height; ++r) {
    JSAMPROW row = out->image.pixels.data() + r * row_bytes;
    jpeg_read_scanlines(&info, &row, 1);
  }
  // The rows below the region are never decoded.
  jpeg_abort_decompress(&info);
  jpeg_destroy_decompress(&info);
  return true;
}

bool EncodeJpegInto(const Image& image, int quality, unsigned char** buffer, unsigned long* size,
                    JpegError* error) {
  jpeg_compress_struct info;
  info.err = jpeg_std_error(&error->manager);
  error->manager.error_exit = JpegErrorExit;
  error->manager.emit_message = JpegWarning;
  if (setjmp(error->jump)) {
    jpeg_destroy_compress(&info);
    return false;
  }
  jpeg_create_compress(&info);
  jpeg_mem_dest(&info, buffer, size);
  info.image_width = static_cast<JDIMENSION>(image.width);
  info.image_height = static_cast<JDIMENSION>(image.height);
  info.input_components = image.channels;
  info.in_color_space = image.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, quality, TRUE);
  jpeg_start_compress(&info, TRUE);
  size_t row_bytes = static_cast<size_t>(image.width) * image.channels;
  while (info.next_scanline < info.image_height) {
    JSAMPROW row = const_cast<JSAMPLE*>(image.pixels.data() + info.next_scanline * row_bytes);
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  jpeg_destroy_compress(&info);
  return true;
}

Status CheckEncodable(const Image& image) {
  if ((image.channels != 1 && image.channels != 3) || image.height <= 0 || image.width <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.height) * image.width * image.channels) {
    return InvalidArgument("cannot encode an image of " + std::to_string(image.height) + "x" +
                           std::to_string(image.width) + "x" + std::to_string(image.channels) +
                           " with " + std::to_string(image.pixels.size()) +
                           " bytes: need 1 or 3 channels and height*width*channels bytes");
  }
  return Status::Ok();
}

}  // namespace

Expected<Image> DecodeJpeg(std::string_view bytes, const std::string& source) {
  Image image;
  JpegError error;
  error.message[0] = '\0';
  if (!DecodeJpegInto(reinterpret_cast<const unsigned char*>(bytes.data()),
                      static_cast<unsigned long>(bytes.size()), &image, &error)) {
    return Corruption(source + ": not a readable JPEG: " + error.message);
  }
  return image;
}

Status DecodeJpegRegion(std::string_view bytes, const std::string& source,
                        const RegionChooser& choose, DecodedRegion* out) {
  JpegError error;
  error.message[0] = '\0';
  if (!DecodeRegionInto(reinterpret_cast<const unsigned char*>(bytes.data()),
                        static_cast<unsigned long>(bytes.size()), choose, out, &error)) {
    return Corruption(source + ": not a readable JPEG: " + error.message);
  }
  return Status::Ok();
}

Expected<Image> DecodePng(std::string_view bytes, const std::string& source) {
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
    return Corruption(source + ": not a readable PNG: " + png.message);
  }
  bool color = (png.format & PNG_FORMAT_FLAG_COLOR) != 0;
  png.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  Image image;
  image.height = static_cast<int>(png.height);
  image.width = static_cast<int>(png.width);
  image.channels = color ? 3 : 1;
  // Zeroed, because alpha is composited onto what the buffer holds (black).
  image.pixels.assign(PNG_IMAGE_SIZE(png), 0);
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    std::string message = png.message;
    png_image_free(&png);
    return Corruption(source + ": not a readable PNG: " + message);
  }
  return image;
}

bool IsPng(std::string_view bytes) {
  return bytes.size() >= 8 && bytes.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8);
}

bool IsJpeg(std::string_view bytes) {
  return bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
         static_cast<unsigned char>(bytes[1]) == 0xD8 &&
         static_cast<unsigned char>(bytes[2]) == 0xFF;
}

Expected<Image> DecodeImage(std::string_view bytes, const std::string& source) {
  if (IsPng(bytes)) return DecodePng(bytes, source);
  if (IsJpeg(bytes)) return DecodeJpeg(bytes, source);
  return Corruption(source +
                    ": neither a JPEG nor a PNG image (unknown leading bytes); image "
                    "folders may hold only .jpg/.jpeg/.png images");
}

Expected<Image> ReadImageFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return DecodeImage(bytes, path);
}

Expected<std::string> EncodeJpeg(const Image& image, int quality) {
  RETURN_IF_ERROR(CheckEncodable(image));
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  JpegError error;
  error.message[0] = '\0';
  bool ok = EncodeJpegInto(image, quality, &buffer, &size, &error);
  std::string out;
  if (ok) out.assign(reinterpret_cast<const char*>(buffer), size);
  std::free(buffer);
  if (!ok) return IOError(std::string("JPEG encoding failed: ") + error.message);
  return out;
}

Expected<std::string> EncodePng(const Image& image) {
  RETURN_IF_ERROR(CheckEncodable(image));
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_get_memory_size(png, size, 0, image.pixels.data(), 0, nullptr)) {
    return IOError(std::string("PNG encoding failed: ") + png.message);
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&png, out.data(), &size, 0, image.pixels.data(), 0, nullptr)) {
    return IOError(std::string("PNG encoding failed: ") + png.message);
  }
  out.resize(size);
  return out;
}

}  // namespace vitscale::data
