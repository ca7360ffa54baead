// retikd/ssl/ssl.hpp — umbrella header of the self-supervised part (DESIGN.md §1 step 1): I-JEPA's
// multi-block masking, the context / EMA target encoders and predictor with their loss and schedules, and
// the linear probe that evaluates a frozen encoder.
#pragma once

#include "retikd/ssl/ijepa.hpp"
#include "retikd/ssl/linear_probe.hpp"
#include "retikd/ssl/masking.hpp"
