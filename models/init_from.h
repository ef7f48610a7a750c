// Starting a job from weights trained elsewhere: the same architecture, possibly with another
// class count (a pretraining head) and another resolution. This is how a job fine-tunes
// published weights or continues from another job's final model.
#pragma once

#include <string>

#include "common/status.h"
#include "models/model.h"

namespace vitscale::models {

// Loads `path` (a released `.npz`, models/npz_layout.h, or vitscale's model file) into a model
// built at the file's own class count and resolution, then replaces its head with a
// zero-initialised one when the class counts or pre_logits differ, interpolates its position
// embeddings when the resolutions differ, copies every weight into `model` (a pre_logits layer
// only `model` has keeps its initialisation) and gives `model` the file's conventions: the
// released code's for an .npz (its padding, GELU and epsilons), those recorded in a vitscale
// file. A file of another architecture is an error naming the first mismatch; `model` is then
// unchanged.
Status InitializeFrom(const std::string& path, ModelImpl& model);

}  // namespace vitscale::models
