#include "ui/jobs/toy_job.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "core/guidance/guidance.h"
#include "core/runtime/runtime.h"
#include "ui/common/tensor_image.h"
#include "ui/jobs/sampling_worker.h"

namespace dlab::ui {

QString ToyChainJob::load(const ToyChainRequest& r) {
    m_sampler.reset();
    try {
        c10::NoGradGuard ng;
        if (!m_model || m_modelPath != r.model) {
            m_model.reset();
            auto model = load_model(r.model.toStdString(), c10::Device(c10::kCPU));
            if (!model) return QString::fromStdString(model.error());
            const NetworkConfig& n = model->config.network;
            if (n.kind != NetworkKind::Mlp || n.in_channels != 2) return QStringLiteral("%1 is not a 2-D model").arg(r.model);
            auto schedule = NoiseSchedule::create(model->config.schedule);
            if (!schedule) return r.model + QStringLiteral(": ") + QString::fromStdString(schedule.error());
            m_model.emplace(std::move(model.value()));
            m_schedule.emplace(schedule.value());
            m_modelPath = r.model;
        }
        if (r.points < 1 || r.steps < 1) return QStringLiteral("points and steps must be positive");
        SamplerConfig sc;
        sc.steps = r.steps;
        // Clip the predicted x0 to the data's range: at t near T, abar is ~1e-9 under the cosine
        // schedule and x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) amplifies any error in eps.
        sc.clip_x0 = true;
        sc.clip_value = 5.0;
        auto sampler = make_sampler(*m_schedule, sc);
        if (!sampler) return QString::fromStdString(sampler.error());
        const ModelConfig& mc = m_model->config;
        Network net = m_model->network;
        ModelFn fn = [net](const at::Tensor& x, const at::Tensor& t, const at::Tensor& y) { return net->forward(x, t, y); };
        const int64_t C = mc.network.num_classes;
        const int cls = r.classIndex < 0 ? -1 : int(std::min<int64_t>(r.classIndex, C - 1));
        auto labelsFor = [&](int64_t n) { return at::full({n}, cls < 0 ? C : cls, at::kLong); };
        auto control = std::make_shared<GuidanceControl>(1.0);
        auto denoiser = [&](int64_t n) {
            return make_denoiser(C > 0 ? classifier_free_guidance(fn, labelsFor(n), C, control) : plain_denoiser(fn, at::Tensor()),
                                 *m_schedule, mc.prediction);
        };
        const at::Tensor lin = at::linspace(-kExtent, kExtent, kGrid);
        const auto mesh = at::meshgrid({lin, lin}, "ij");
        m_grid = at::stack({mesh[0].flatten(), mesh[1].flatten()}, 1);
        m_denoise = denoiser(r.points);
        m_gridDenoise = denoiser(m_grid.size(0));  // the arrows, denoised with the same class
        m_gen.emplace(make_generator(r.seed));
        m_x = at::randn({r.points, 2}, *m_gen, at::TensorOptions().dtype(at::kFloat));
        m_sampler = std::move(sampler.value());
        m_index = 0;
    } catch (const std::exception& e) {
        m_sampler.reset();
        return QString::fromStdString(error_message(e));
    }
    return QString();
}

ToyFrame ToyChainJob::nextFrame() {
    c10::NoGradGuard ng;
    ToyFrame f;
    const int total = int(m_sampler->num_steps());
    const int64_t t = m_sampler->timesteps()[size_t(m_index)];
    f.index = m_index;
    f.total = total;
    f.t = int(t);
    f.x = toDoubles(m_x.select(1, 0));
    f.y = toDoubles(m_x.select(1, 1));
    const X0Eps g = m_gridDenoise(m_grid, t);
    // Direction towards the predicted clean point, scaled for display.
    const at::Tensor d = (g.x0 - m_grid) * 0.25;
    f.ax = toDoubles(m_grid.select(1, 0));
    f.ay = toDoubles(m_grid.select(1, 1));
    f.dx = toDoubles(d.select(1, 0));
    f.dy = toDoubles(d.select(1, 1));
    m_x = m_sampler->step(m_index, m_x, m_denoise, *m_gen).x_prev;
    ++m_index;
    if (m_index == total) {
        f.last = true;
        f.finalX = toDoubles(m_x.select(1, 0));
        f.finalY = toDoubles(m_x.select(1, 1));
    }
    return f;
}

bool ToyChainJob::start() {
    const QString error = load(m_request);
    if (error.isEmpty()) return true;
    Q_EMIT m_worker->toyFailed(error, m_requestId);
    return false;
}

bool ToyChainJob::step() {
    if (!m_sampler || m_index >= m_sampler->num_steps()) return false;
    try {
        const ToyFrame f = nextFrame();
        Q_EMIT m_worker->toyFrame(f, m_requestId);
        return !f.last;
    } catch (const std::exception& e) {
        m_sampler.reset();
        Q_EMIT m_worker->toyFailed(QString::fromStdString(error_message(e)), m_requestId);
        return false;
    }
}

}  // namespace dlab::ui
