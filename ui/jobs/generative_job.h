#pragma once
// The "Generative models" view's job: one big step against many small ones. For one class it
// draws a grid from the bundled GAN (one network evaluation), from the VAE prior (the bundled
// autoencoder's decoder on N(0, I), one evaluation) and from the loaded diffusion model with DDIM at
// the chosen step count (the chain stepped one sampler step per job step); or, for interpolation,
// a row between two seeds from the GAN (linear in z) and from diffusion (spherical in x_T, DDIM 50).
// Each panel is reported as soon as it is ready (generativePanel), so the fast ones show first.

#include <memory>

#include <QString>
#include <QMetaType>
#include <QtGlobal>

#include "core/sampling/generate.h"
#include "ui/jobs/lab_job.h"

namespace dlab::ui {

struct GenerativeRequest {
    int classIndex = 0;
    quint64 seed = 0;
    quint64 seedB = 1;        ///< interpolation: the second seed
    int diffusionSteps = 50;  ///< DDIM steps of the diffusion panel
    int count = 16;           ///< samples per panel (interpolation: frames)
    bool interpolate = false;
};

class GenerativeJob : public LabJob {
public:
    GenerativeJob(std::shared_ptr<const LabModel> lab, const GenerativeRequest& request, int requestId, SamplingWorker* worker);
    bool start() override;
    bool step() override;
    JobProgress progress() const override;

private:
    std::shared_ptr<const LabModel> m_lab;
    GenerativeRequest m_request;
    int m_requestId;
    SamplingWorker* m_worker;
    int m_phase = 0;  // 0 GAN, 1 VAE, 2 diffusion (stepped), 3 done
    std::unique_ptr<GenerateRun> m_run;
    at::Tensor m_labels;
};

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::GenerativeRequest)
