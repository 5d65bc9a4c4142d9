#pragma once
// The Batch view's "VAE samples" as a job of one step: the loaded latent model's autoencoder
// decodes latents drawn from its prior N(0, I) (a one-step VAE generator, no diffusion); the grid's
// title quotes the FIDs recorded in the bundled models' manifests.

#include <memory>

#include <QtGlobal>

#include "ui/jobs/lab_job.h"

namespace dlab::ui {

class VaeGridJob : public LabJob {
public:
    VaeGridJob(std::shared_ptr<const LabModel> lab, int count, quint64 seed, SamplingWorker* worker);
    bool start() override;
    bool step() override;
    JobProgress progress() const override { return {m_done ? 1 : 0, 1}; }

private:
    std::shared_ptr<const LabModel> m_lab;
    int m_count;
    quint64 m_seed;
    SamplingWorker* m_worker;
    bool m_done = false;
};

}  // namespace dlab::ui
