#pragma once
// The forward-process preview as a job of the lab's worker: a request describes x_0 (a dataset
// sample, the user's image file or a 2-D toy set), t and two schedules; the result carries every
// image and curve the Forward view shows, as value types. The job keeps x_0, its fixed noise and
// its latent between requests, so scrubbing t only re-noises.

#include <memory>
#include <string>
#include <vector>

#include <QImage>
#include <QMetaType>
#include <QString>
#include <QVector>

#include <ATen/core/Tensor.h>

#include "core/latent/autoencoder.h"

namespace dlab::ui {

struct ForwardRequest {
    enum Source { Dataset = 0, File = 1, Toy = 2 };
    int source = Dataset;
    int classIndex = 0, index = 0;  ///< Dataset: a Fashion-MNIST test image of a class
    QString path;                   ///< File: an image file (resized to the model's size)
    QString toy;                    ///< Toy: a 2-D toy set's name
    int t = 300;
    int scheduleA = 0, scheduleB = 1;  ///< ScheduleKind values
    bool latent = false;               ///< also noise in the bundled autoencoder's latent space
    int serial = 0;                    ///< the view's counter, echoed in the result
};

struct ForwardResult {
    ForwardRequest request;
    QString error;         ///< x_0 could not be made (nothing else is set)
    QString message;       ///< what x_0 is
    QString latentError;   ///< latent noise was asked for but the autoencoder is missing
    bool points = false;   ///< x_0 is a 2-D point cloud (images are scatter renderings)
    QImage original, a, b, latent;
    QVector<QImage> stripA, stripB, stripL;
    QVector<int> stripT;
    QString nameA, nameB;
    double alphaBarA = 0, alphaBarB = 0, snrA = 0, snrB = 0;  ///< at t
    QVector<double> curveA, curveB, snrCurveA, snrCurveB;    ///< abar_t and SNR_t over t
};

/// The image size user files are resized to: the loaded model's (pixels; a latent model's decoder).
struct ModelImageShape {
    int channels = 1, size = 28;
};

class ForwardJob {
public:
    static constexpr int kStrip = 8;
    static constexpr int kT = 1000;
    ForwardResult compute(const ForwardRequest& request, const ModelImageShape& shape);

private:
    QString load(const ForwardRequest& r, const ModelImageShape& shape);
    QString m_key;        // the source x_0 was made from
    QString m_message;
    at::Tensor m_x0;      // [C,H,W] in [-1, 1], or [N,2] points
    bool m_points = false;
    at::Tensor m_eps;     // fixed noise: scrubbing t shows one trajectory
    at::Tensor m_testImages, m_testLabels;
    std::vector<std::string> m_classNames;
    Autoencoder m_autoencoder{nullptr};
    at::Tensor m_z0, m_zeps;
};

/// x_0 from an image file at a model's size: centre-cropped to a square, area-averaged (or
/// bilinearly enlarged) to size x size, grey when channels == 1; values in [-1, 1].
at::Tensor imageAtModelSize(const at::Tensor& image01, const ModelImageShape& shape);

}  // namespace dlab::ui

Q_DECLARE_METATYPE(dlab::ui::ForwardRequest)
Q_DECLARE_METATYPE(dlab::ui::ForwardResult)
