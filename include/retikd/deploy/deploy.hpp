// retikd/deploy/deploy.hpp — the deployment side in one include: batch norm folding (fold.hpp), the fp16
// student bundle (bundle.hpp), Grad-CAM / Grad-CAM++ (gradcam.hpp) and batch classification with reports
// (classify.hpp). docs/deploy.md describes the bundle format and the classify tool.
#pragma once

#include "retikd/deploy/bundle.hpp"
#include "retikd/deploy/classify.hpp"
#include "retikd/deploy/fold.hpp"
#include "retikd/deploy/gradcam.hpp"
#include "retikd/deploy/sha256.hpp"
