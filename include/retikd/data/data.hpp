// retikd/data/data.hpp — the whole data pipeline: decoding, datasets and manifests, transforms, the synthetic
// fundus set, and the threaded loader. See docs/data.md.
#pragma once

#include "retikd/data/augment.hpp"
#include "retikd/data/classes.hpp"
#include "retikd/data/dataset.hpp"
#include "retikd/data/decode.hpp"
#include "retikd/data/image.hpp"
#include "retikd/data/loader.hpp"
#include "retikd/data/png_write.hpp"
#include "retikd/data/problems.hpp"
#include "retikd/data/progress.hpp"
#include "retikd/data/source.hpp"
#include "retikd/data/subset.hpp"
#include "retikd/data/synthetic.hpp"
#include "retikd/data/transforms.hpp"
