#include "ui/common/sampler_choice.h"

#include <algorithm>

#include <QComboBox>
#include <QCoreApplication>
#include <QJsonObject>
#include <QSpinBox>

#include "core/sampling/sampler.h"

namespace dlab::ui {

QComboBox* makeSamplerBox(const QString& objectName) {
    auto* box = new QComboBox;
    box->setObjectName(objectName);
    for (SamplerKind k : {SamplerKind::Ddim, SamplerKind::DpmSolverPP2M, SamplerKind::Ddpm})
        box->addItem(QString::fromStdString(to_string(k)), int(k));
    box->setToolTip(QCoreApplication::translate(
        "SamplerChoice", "DDIM and DPM-Solver++(2M) are deterministic at η = 0; DDPM adds fresh noise at every step"));
    return box;
}

QComboBox* makeSpacingBox(const QString& objectName) {
    auto* box = new QComboBox;
    box->setObjectName(objectName);
    for (TimestepSpacing k : {TimestepSpacing::Trailing, TimestepSpacing::Linspace, TimestepSpacing::Leading})
        box->addItem(QString::fromStdString(to_string(k)), int(k));
    box->setToolTip(QCoreApplication::translate(
        "SamplerChoice", "Which of the schedule's timesteps the steps visit: trailing starts at T-1 and stops short of 0 "
                         "(at T/steps - 1), linspace runs from T-1 down to 0, leading starts short of T-1 and ends at 0"));
    return box;
}

bool selectSampling(QComboBox* samplerBox, QSpinBox* stepsBox, QComboBox* spacingBox, const QString& sampler, int steps,
                    const QString& spacing) {
    const int k = sampler.isEmpty() ? -1 : samplerBox->findText(sampler);
    if (k < 0) return false;
    samplerBox->setCurrentIndex(k);
    stepsBox->setValue(std::min(steps, stepsBox->maximum()));
    spacingBox->setCurrentIndex(std::max(0, spacingBox->findText(spacing)));  // item 0: trailing
    return true;
}

void selectRecordedSampling(QComboBox* samplerBox, QComboBox* spacingBox, const QJsonObject& p) {
    const QString sampler = p.value(QStringLiteral("sampler")).toString(QStringLiteral("ddim"));
    const QString spacing = p.value(QStringLiteral("spacing")).toString(QStringLiteral("trailing"));
    samplerBox->setCurrentIndex(std::max(0, samplerBox->findText(sampler)));
    spacingBox->setCurrentIndex(std::max(0, spacingBox->findText(spacing)));
}

}  // namespace dlab::ui
