// retikd/data/subset.hpp — a reproducible random subset of a dataset, for the --limit options of the examples
// (distill_retina's smoke runs, pretrain_ijepa's pretraining and probe sets): the same seed picks the same
// images on every machine (retikd's own Generator, not std::shuffle, whose algorithm is implementation-defined).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "retikd/core/random.hpp"
#include "retikd/data/dataset.hpp"

namespace retikd {
namespace data {

// `limit` samples of ds drawn without replacement (a Fisher–Yates shuffle by Generator(seed), cut to limit);
// ds itself when limit <= 0 or ds has no more than limit samples.
inline Dataset random_subset(const Dataset& ds, int64_t limit, uint64_t seed) {
  if (limit <= 0 || ds.size() <= limit) return ds;
  Dataset out = ds;
  std::vector<Sample> s = ds.samples;
  Generator g(seed);
  for (std::size_t i = s.size(); i > 1; --i) std::swap(s[i - 1], s[g.below(i)]);
  s.resize(static_cast<std::size_t>(limit));
  out.samples = s;
  return out;
}

}  // namespace data
}  // namespace retikd
