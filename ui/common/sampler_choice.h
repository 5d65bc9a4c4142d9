#pragma once
// The sampler and timestep-spacing choosers that the Reverse and Batch views share: the item data
// is the core enum, the text its name (as manifests and the CLI write it).

#include <QString>

class QComboBox;
class QJsonObject;
class QSpinBox;

namespace dlab::ui {

/// DDIM, DPM-Solver++(2M) and DDPM, in that order (data: int(SamplerKind)).
QComboBox* makeSamplerBox(const QString& objectName);
/// trailing (the samplers' default), linspace and leading (data: int(TimestepSpacing)).
QComboBox* makeSpacingBox(const QString& objectName);
/// Sets the three controls to a recommended sampling (a manifest's); an empty `spacing` selects the
/// samplers' default. False, and nothing changed, when `sampler` is not one of the box's.
bool selectSampling(QComboBox* samplerBox, QSpinBox* stepsBox, QComboBox* spacingBox, const QString& sampler, int steps,
                    const QString& spacing);
/// Sets the two boxes to a run record's "sampler" and "spacing" parameters (records from before
/// they were choices: DDIM with trailing timesteps).
void selectRecordedSampling(QComboBox* samplerBox, QComboBox* spacingBox, const QJsonObject& parameters);

}  // namespace dlab::ui
