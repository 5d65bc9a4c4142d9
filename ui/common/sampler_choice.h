#pragma once
// The sampler and timestep-spacing choosers that the Reverse and Batch views share: the item data
// is the core enum, the text its name (as manifests and the CLI write it).

#include <QString>

class QComboBox;

namespace dlab::ui {

/// DDIM, DPM-Solver++(2M) and DDPM, in that order (data: int(SamplerKind)).
QComboBox* makeSamplerBox(const QString& objectName);
/// trailing (the samplers' default), linspace and leading (data: int(TimestepSpacing)).
QComboBox* makeSpacingBox(const QString& objectName);

}  // namespace dlab::ui
