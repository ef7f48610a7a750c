#include "data/image_codec.h"

#include <jpeglib.h>
#include <png.h>

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

void JpegSilence(j_common_ptr, int) {}

// Returns false and fills error->message on failure.
bool DecodeJpegInto(const unsigned char* data, unsigned long size, Image* out, JpegError* error) {
  jpeg_decompress_struct info;
  info.err = jpeg_std_error(&error->manager);
  error->manager.error_exit = JpegErrorExit;
  error->manager.emit_message = JpegSilence;  // warnings (e.g. extraneous bytes) are not fatal
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

bool EncodeJpegInto(const Image& image, int quality, unsigned char** buffer, unsigned long* size,
                    JpegError* error) {
  jpeg_compress_struct info;
  info.err = jpeg_std_error(&error->manager);
  error->manager.error_exit = JpegErrorExit;
  error->manager.emit_message = JpegSilence;
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

Expected<Image> ReadImageFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  static const char kPngSignature[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPngSignature, 8) == 0) {
    return DecodePng(bytes, path);
  }
  if (bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
      static_cast<unsigned char>(bytes[1]) == 0xD8 &&
      static_cast<unsigned char>(bytes[2]) == 0xFF) {
    return DecodeJpeg(bytes, path);
  }
  return Corruption(path +
                    ": neither a JPEG nor a PNG file (unknown leading bytes); image "
                    "folders may hold only .jpg/.jpeg/.png images");
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
