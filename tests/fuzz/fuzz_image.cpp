// tests/fuzz/fuzz_image.cpp — fuzzes image decoding (data/decode.hpp: the JPEG / PNG structure checks, the
// header dimensions, the pixel limit, stb_image under its allocation budget). The limit is lowered to
// 512 x 512 here so each run stays fast; the logic is the same at any limit. Promise checked: a decoded image
// has the size its header declared, within the limit, and all its bytes.
#include "fuzz_target.hpp"

#include <retikd/data/decode.hpp>

RETIKD_FUZZ_TARGET(image)(const uint8_t* data, std::size_t size) {
  using namespace retikd;
  constexpr int64_t kLimit = 512 * 512;
  data::ImageInfo info;
  data::ImageU8 img;
  try {
    img = data::decode_image(data, size, "fuzz", &info, kLimit);
  } catch (const data::DataError& e) {
    FUZZ_REQUIRE(!e.problems().empty());
    return 0;
  } catch (const Error&) {
    return 0;
  }
  FUZZ_REQUIRE(img.width >= 1 && img.height >= 1);
  FUZZ_REQUIRE(static_cast<int64_t>(img.width) * img.height <= kLimit);
  FUZZ_REQUIRE(img.pixels.size() == static_cast<std::size_t>(img.width) * img.height * 3);
  FUZZ_REQUIRE(info.width == img.width && info.height == img.height);
  FUZZ_REQUIRE(info.format == data::ImageFormat::jpeg || info.format == data::ImageFormat::png);
  return 0;
}
