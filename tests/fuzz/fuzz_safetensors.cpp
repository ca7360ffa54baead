// tests/fuzz/fuzz_safetensors.cpp — fuzzes the safetensors reader (io/safetensors.hpp): the header length,
// the JSON header, every entry and the layout of the data section. Promise checked: an accepted file
// serialises back to a file that reads as the same tensors (names, dtypes, shapes, bytes) and metadata.
#include "fuzz_target.hpp"

#include <cstring>

#include <retikd/io/safetensors.hpp>

RETIKD_FUZZ_TARGET(safetensors)(const uint8_t* data, std::size_t size) {
  using namespace retikd;
  io::SafetensorsContents c;
  try {
    c = io::parse_safetensors(data, size, "fuzz");
  } catch (const Error&) {
    return 0;
  }
  const std::vector<uint8_t> bytes = io::serialize_safetensors(c.tensors, c.metadata);
  const io::SafetensorsContents back = io::parse_safetensors(bytes, "fuzz round trip");
  FUZZ_REQUIRE(back.metadata == c.metadata);
  FUZZ_REQUIRE(back.tensors.size() == c.tensors.size());
  const auto a = c.to_map(), b = back.to_map();
  FUZZ_REQUIRE(a.size() == c.tensors.size());  // names are unique
  for (const auto& kv : a) {
    const auto it = b.find(kv.first);
    FUZZ_REQUIRE(it != b.end());
    const Tensor& x = kv.second;
    const Tensor& y = it->second;
    FUZZ_REQUIRE(x.dtype() == y.dtype() && x.shape() == y.shape());
    const std::size_t n = static_cast<std::size_t>(x.numel()) * x.element_size();
    FUZZ_REQUIRE(n == 0 || std::memcmp(x.raw_data(), y.raw_data(), n) == 0);
  }
  return 0;
}
