// tests/fuzz/fuzz_bundle.cpp — fuzzes the student-bundle loader (deploy/bundle.hpp) as classify uses it:
// the header without the checksum (read_bundle_info with verify = false, so mutated fields reach the
// semantic checks instead of stopping at the checksum), then the full load (checksum, finite weights, model
// rebuild, tensors) of what passed the first. Promise checked: whatever loads passes check_bundle_fields
// and has as many outputs as class names.
#include "fuzz_target.hpp"

#include <retikd/deploy/bundle.hpp>

RETIKD_FUZZ_TARGET(bundle)(const uint8_t* data, std::size_t size) {
  using namespace retikd;
  static fuzz::InputFile file;
  const std::string& path = file.write(data, size);
  try {
    const deploy::BundleInfo info = deploy::read_bundle_info(path, /*verify=*/false);
    FUZZ_REQUIRE(deploy::check_bundle_fields(info.arch, info.options, info.classes, info.preprocess).empty());
  } catch (const Error&) {
    return 0;  // load_bundle runs the same checks (and the checksum first): it would fail too
  }
  try {
    const deploy::Bundle b = deploy::load_bundle(path);
    FUZZ_REQUIRE(deploy::check_bundle_fields(b.info.arch, b.info.options, b.info.classes, b.info.preprocess).empty());
    FUZZ_REQUIRE(b.model->num_classes() == static_cast<int64_t>(b.info.classes.size()));
  } catch (const Error&) {
  }
  return 0;
}
