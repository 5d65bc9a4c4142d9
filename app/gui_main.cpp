// diffusionlab: the desktop application. Thin: set up threads and the device, open the window.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include <QApplication>
#include <QIcon>
#include <QFileInfo>
#include <QSettings>
#include <QElapsedTimer>
#include <QSpinBox>
#include <QTabWidget>
#include <QTimer>

#include "app/args.h"
#include "core/io/model_catalog.h"
#include "core/networks/fused_ops.h"
#include "core/runtime/runtime.h"
#include "ui/views/explorer_view.h"
#include "ui/views/forward_view.h"
#include "ui/views/lecture_tour.h"
#include "ui/views/models_view.h"
#include "ui/views/main_window.h"
#include "ui/views/sds_view.h"
#include "ui/views/video_view.h"
#include "ui/views/batch_view.h"
#include "ui/views/reverse_view.h"
#include "ui/views/toy_view.h"
#include "ui/views/training_view.h"
#include "ui/jobs/sampling_worker.h"

namespace {

// OpenMP threads that spin after each parallel region steal the GUI thread's core on small
// machines (STACK.md: up to 10x slower). libgomp reads OMP_WAIT_POLICY when it is loaded, before
// main, so set it and re-execute once.
void ensure_passive_openmp(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::execv("/proc/self/exe", argv);
    // execv only returns on failure: carry on with active waiting.
}

// Whether Qt can open its platform: a display server, or a platform chosen by the user.
bool display_available(int argc, char** argv) {
    for (const char* var : {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"}) {
        const char* v = std::getenv(var);
        if (v != nullptr && *v != '\0') return true;
    }
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "-platform") == 0 || std::strncmp(argv[i], "-platform=", 10) == 0) return true;
    }
    return false;
}

// The application's options (parsed after Qt has taken its own, such as -platform, from argv).
dlab::app::Args declare_options() {
    dlab::app::Args args("diffusionlab");
    args.option("device", "auto, cpu, cuda or cuda:N", "auto")
        .option("precision", "inference precision on CUDA: fp32, fp16 or bf16 (fp16: same FID, 1.5-1.9x faster at batch 256)", "fp32")
        .option("threads", "LibTorch intra-op threads (0: one per core)", "0")
        .option("screenshot", "save a PNG of the window once shown, then quit")
        .option("tab", "open this tab (index)")
        .option("model", "open the lab with this bundled model (e.g. latent-fashion-mnist)")
        .flag("vae", "with --tab 2 --play: one-step VAE samples of the latent model instead of a strip")
        .option("image", "open this image file in the Forward view (as x_0, resized to the model's size)")
        .option("t", "the Forward view's t (0-999)")
        .flag("latent-noise", "the forward view also noises in the autoencoder's latent space")
        .flag("play", "start a chain as soon as the model is loaded")
        .flag("bench-stall", "run a 250-step chain, print the GUI event loop's longest stall and the chain's fps, quit")
        .flag("scrub", "with --bench-stall: also drag the Forward view's t slider every 16 ms during the chain")
        .option("guidance", "initial guidance scale")
        .option("start-image", "the Reverse view's chains (and the Batch view's samples) start from this Fashion-MNIST test image (0-9999) noised to --start-t")
        .option("start-t", "with --start-image: the noise level t it starts from (0-999)", "500")
        .option("sds-steps", "with --tab 10 --play: score distillation steps (default: 300)")
        .option("class", "with --play: the Reverse view's class (--tab 0), or the class to distil or to film (--tab 10 or 11; default: 7, sneaker)")
        .option("direction", "with --tab 11 --play: the direction of motion, 0-7 (E, NE, N, ...; default: 1)")
        .option("video-steps", "with --tab 11 --play: DDIM steps of the clip (default: 25)")
        .flag("3d", "with --tab 10 --play: distil a 3-D voxel scene")
        .option("prompt", "text-to-image models (--model fashion-mnist-text): the Reverse view's prompt")
        .option("negative-prompt", "text-to-image models: the Reverse view's negative prompt")
        .option("sweep-count", "with --tab 5 --play: samples per scale of the explorer's sweeps", "200")
        .option("train-steps", "with --tab 6 --play: a tiny Fashion-MNIST training run of this many steps", "300")
        .flag("train-gan", "with --tab 6 --play: train a GAN instead of a diffusion model")
        .option("classifier-scale", "start with classifier guidance of this scale (kind: classifier; with --guidance: both)")
        .flag("tour", "open the lecture tour (Help > Lecture tour) at its first stop")
        .option("tour-stop", "with --tour: open this stop (1-based); with --screenshot the picture is taken once its job has shown its output")
        .flag("first-start", "show the first start's demonstration (it plays by itself at the very first start)")
        .option("size", "window size WxH (e.g. 1280x800), or 'min' for the smallest the window allows")
        .flag("version", "print the version")
        .flag("help", "show this help");
    return args;
}

}  // namespace

int main(int argc, char** argv) {
    // --help and --version answer without a display (QApplication needs one to start).
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            std::cout << "Usage: diffusionlab [OPTIONS]\n" << declare_options().help();
            return 0;
        }
        if (std::strcmp(argv[i], "--version") == 0) {
            std::cout << "diffusionlab " << dlab::version() << "\n";
            return 0;
        }
    }
    if (!display_available(argc, argv)) {
        std::cerr << "diffusionlab: no display to open a window on (DISPLAY and WAYLAND_DISPLAY are not set).\n"
                     "  Start it from a desktop session, under a virtual display (xvfb-run -a diffusionlab ...),\n"
                     "  or with QT_QPA_PLATFORM=offscreen for --screenshot and --bench-stall runs.\n";
        return 2;
    }
    ensure_passive_openmp(argv);

    QApplication app(argc, argv);
    QApplication::setOrganizationName(QStringLiteral("DiffusionLab"));
    QApplication::setApplicationName(QStringLiteral("DiffusionLab"));
    QApplication::setApplicationVersion(QString::fromStdString(dlab::version()));
    QApplication::setWindowIcon(QIcon(QStringLiteral(":/icons/diffusionlab.svg")));

    std::vector<std::string> rest;
    for (const QString& a : QApplication::arguments().mid(1)) rest.push_back(a.toStdString());
    dlab::app::Args args = declare_options();
    if (auto st = args.parse(rest); !st) {
        std::cerr << st.error() << "\n";
        return 2;
    }
    auto threads = args.get_int("threads", 0, 1024);
    if (!threads) {
        std::cerr << threads.error() << "\n";
        return 2;
    }
    dlab::ui::MainWindowOptions options;
    options.threads = dlab::configure_threads(static_cast<int>(threads.value()));
    auto device = dlab::select_device(args.get("device"));
    if (!device) {
        std::cerr << "diffusionlab: " << device.error() << "\n";
        return 1;
    }
    options.deviceLabel = QString::fromStdString(device->str()).toUpper();
    // The CUDA inference precision: --precision, else the one chosen in the Settings menu last time
    // (a setting that is not a precision is ignored: float32).
    if (args.given("precision")) {
        if (const auto problem = dlab::choose_inference_precision(args.get("precision"), device.value())) {
            std::cerr << "diffusionlab: " << *problem << "\n";
            return 2;
        }
    } else if (device->is_cuda()) {
        const QString saved = QSettings().value(QStringLiteral("inferencePrecision")).toString();
        if (const auto p = dlab::parse_precision(saved.toStdString())) dlab::set_inference_precision(*p);
    }
    if (device->is_cuda()) options.precision = QString::fromStdString(dlab::precision_name(dlab::half_inference_dtype()));
    options.torchVersion = QString::fromStdString(dlab::runtime_info().torch_version);

    // --model: a bundled name or a model file. It is loaded like a choice in the model list; the
    // settings remember it only once it has loaded (a broken file cannot lock the app out).
    QString modelName, modelPath;
    if (args.has("model")) {
        const std::string wanted = args.get("model");
        auto resolved = dlab::resolve_model(wanted);
        if (!resolved) {
            std::cerr << "diffusionlab: --model: " << resolved.error() << "\n";
            return 2;
        }
        modelPath = QString::fromStdString(resolved.value());
        modelName = QFileInfo(modelPath).completeBaseName();
    }
    // The very first start (nothing in the settings yet) shows the demonstration, unless the
    // command line asks for something else to happen at once.
    const bool automated = args.has("play") || args.has("bench-stall") || args.has("screenshot") || args.has("tour");
    options.firstStart = args.has("first-start") || (!automated && !QSettings().value(QStringLiteral("firstStartShown")).toBool());
    dlab::ui::MainWindow window(options);
    if (args.has("size")) {
        const QString size = QString::fromStdString(args.get("size"));
        const QStringList wh = size.split(QLatin1Char('x'));
        bool okW = false, okH = false;
        if (size == QStringLiteral("min")) {
            window.resize(window.minimumSize());
        } else if (wh.size() == 2 && wh[0].toInt(&okW) > 0 && wh[1].toInt(&okH) > 0 && okW && okH && wh[0].toInt() <= 16384 &&
                   wh[1].toInt() <= 16384) {
            window.resize(wh[0].toInt(), wh[1].toInt());
        } else {
            std::cerr << "diffusionlab: --size: '" << size.toStdString() << "' is not WxH (e.g. 1280x800) or min\n";
            return 2;
        }
    }
    if (!modelPath.isEmpty()) window.reverseView()->useModel(modelName, modelPath);
    if (args.has("tab")) {
        const QTabWidget* tabs = window.findChild<QTabWidget*>();
        auto tab = args.get_int("tab", 0, tabs->count() - 1);
        if (!tab) {
            std::cerr << tab.error() << "; the tabs:";
            for (int i = 0; i < tabs->count(); ++i) std::cerr << (i ? ", " : " ") << i << " " << tabs->tabText(i).remove(QLatin1Char('&')).toStdString();
            std::cerr << "\n";
            return 2;
        }
        window.setCurrentTab(static_cast<int>(tab.value()));
    }
    if (args.has("latent-noise")) window.forwardView()->setLatent(true);
    if (args.has("image")) window.forwardView()->loadImageFile(QString::fromStdString(args.get("image")));
    if (args.has("t")) {
        auto t = args.get_int("t", 0, 999);
        if (!t) {
            std::cerr << t.error() << "\n";
            return 2;
        }
        window.forwardView()->setT(int(t.value()));
    }
    if (args.has("guidance")) {
        auto g = args.get_double("guidance", 0.0, 10.0);
        if (!g) {
            std::cerr << g.error() << "\n";
            return 2;
        }
        window.reverseView()->setGuidance(g.value());
    }
    if (args.has("start-image")) {
        auto image = args.get_int("start-image", 0, 9999);
        auto t = args.get_int("start-t", 0, 999);
        for (const std::string* e : {&image.error(), &t.error()})
            if (!e->empty()) {
                std::cerr << *e << "\n";
                return 2;
            }
        window.reverseView()->setStartFrom(int(image.value()), int(t.value()));
        window.batchView()->setStartFrom(int(image.value()), int(t.value()));
    }
    if (args.has("prompt") || args.has("negative-prompt"))
        window.reverseView()->setPrompt(QString::fromStdString(args.get("prompt")), QString::fromStdString(args.get("negative-prompt")));
    if (args.has("classifier-scale")) {
        auto c = args.get_double("classifier-scale", 0.0, 20.0);
        if (!c) {
            std::cerr << c.error() << "\n";
            return 2;
        }
        window.reverseView()->setClassifierGuidance(args.has("guidance") ? 2 : 1, c.value());
    }
    window.show();
    int tourStop = -1;
    if (args.has("tour")) {
        tourStop = 0;
        if (args.has("tour-stop")) {
            auto stop = args.get_int("tour-stop", 1, window.tour()->count());
            if (!stop) {
                std::cerr << stop.error() << "\n";
                return 2;
            }
            tourStop = int(stop.value()) - 1;
        }
        window.tour()->show();
        window.tour()->go(tourStop);
    }
    if (args.has("bench-stall")) {
        // Measures how long the GUI thread goes without handling a 1 ms timer while a chain runs
        // on the worker: the longest gap is the worst freeze a user would feel.
        auto* clock = new QElapsedTimer;
        auto* tick = new QTimer(&window);
        auto* longest = new qint64(0);
        auto* last = new qint64(0);
        tick->setInterval(1);
        QObject::connect(tick, &QTimer::timeout, [clock, longest, last] {
            const qint64 now = clock->nsecsElapsed();
            *longest = std::max(*longest, now - *last);
            *last = now;
        });
        auto* view = window.reverseView();
        // What the worker reports with each frame: its step (network included) and the frame's
        // conversion to images, timed apart; and when the first frame reached the GUI.
        struct Frames {
            qint64 firstAt = -1;
            int count = 0;
            double stepSum = 0, stepMax = 0, frameSum = 0, frameMax = 0;
        };
        auto* frames = new Frames;
        QObject::connect(view, &dlab::ui::ReverseView::modelReady, view, [view, clock, tick, last] {
            view->findChild<QSpinBox*>(QStringLiteral("steps"))->setValue(250);
            clock->start();
            *last = 0;
            tick->start();
            view->newChain();
        }, Qt::QueuedConnection);
        QObject::connect(view->worker(), &dlab::ui::SamplingWorker::frameReady, view,
                         [frames, clock](const dlab::ui::ChainFrame& f) {
                             if (frames->firstAt < 0) frames->firstAt = clock->nsecsElapsed();
                             ++frames->count;
                             frames->stepSum += f.stepMs;
                             frames->stepMax = std::max(frames->stepMax, f.stepMs);
                             frames->frameSum += f.frameMs;
                             frames->frameMax = std::max(frames->frameMax, f.frameMs);
                         });
        // --scrub: a user dragging the Forward view's t slider (one move per 16 ms) while the chain
        // runs; each move is a forward-preview request to the same worker (coalesced there).
        struct Scrub {
            int moves = 0, shown = 0;
            std::map<int, qint64> sentAt;  // t -> when it was asked for
            double maxLatency = 0, sumLatency = 0;
        };
        auto* scrub = new Scrub;
        if (args.has("scrub")) {
            auto* forward = window.forwardView();
            auto* mover = new QTimer(&window);
            mover->setInterval(16);
            QObject::connect(mover, &QTimer::timeout, forward, [forward, scrub, clock] {
                const int t = (scrub->moves * 3) % 1000;
                ++scrub->moves;
                scrub->sentAt[t] = clock->nsecsElapsed();
                forward->setT(t);
            });
            QObject::connect(forward, &dlab::ui::ForwardView::previewShown, forward, [forward, scrub, clock] {
                auto it = scrub->sentAt.find(forward->shownT());
                if (it == scrub->sentAt.end()) return;
                const double ms = (clock->nsecsElapsed() - it->second) / 1e6;
                ++scrub->shown;
                scrub->sumLatency += ms;
                scrub->maxLatency = std::max(scrub->maxLatency, ms);
                scrub->sentAt.erase(it);
            });
            QObject::connect(view, &dlab::ui::ReverseView::modelReady, mover, qOverload<>(&QTimer::start), Qt::QueuedConnection);
        }
        QObject::connect(view, &dlab::ui::ReverseView::chainFinished, &window, [view, clock, longest, scrub, frames] {
            const double secs = clock->nsecsElapsed() / 1e9;
            std::cout << "chain: " << view->frameCount() << " steps in " << secs << " s = "
                      << view->frameCount() / secs << " frames/s; longest GUI event-loop stall "
                      << *longest / 1e6 << " ms\n";
            if (frames->count > 0)
                std::cout << "first frame " << frames->firstAt / 1e6 << " ms after the chain was asked for; worker per step: "
                          << "sampler step (network included) mean " << frames->stepSum / frames->count << " ms, max "
                          << frames->stepMax << " ms; frame conversion mean " << frames->frameSum / frames->count
                          << " ms, max " << frames->frameMax << " ms\n";
            if (scrub->moves > 0)
                std::cout << "forward scrub during the chain: " << scrub->moves << " slider moves, " << scrub->shown
                          << " previews shown (the rest coalesced); request-to-screen latency mean "
                          << (scrub->shown ? scrub->sumLatency / scrub->shown : 0.0) << " ms, max "
                          << scrub->maxLatency << " ms\n";
            QApplication::exit(0);
        });
    }
    // --play starts the current tab's job once the model is loaded: a chain, a batch strip across
    // guidance scales, or a 2-D chain; with --screenshot the picture is taken when it finishes.
    const bool play = args.has("play");
    const int tab = window.currentTab();
    if (play) {
        QObject::connect(window.reverseView(), &dlab::ui::ReverseView::modelReady, window.reverseView(),
                         [&window, tab, &args] {
                             if (tab == 5) {
                                 // Both kinds on one plot: a classifier-free sweep, then a classifier one.
                                 auto count = args.get_int("sweep-count", 20, 10000);
                                 const int n = count ? int(count.value()) : 200;
                                 auto* ex = window.explorerView();
                                 QObject::connect(ex, &dlab::ui::ExplorerView::finished, ex, [ex, n](bool ok) {
                                     if (ok && ex->rows(1).isEmpty())
                                         QTimer::singleShot(0, ex, [ex, n] { ex->runWith(1, QStringLiteral("1, 2, 5, 10, 20"), n, 20); });
                                 });
                                 ex->runWith(0, QStringLiteral("0, 1, 2, 3, 5"), n, 20);
                             } else if (tab == 6) {
                                 auto steps = args.get_int("train-steps", 10, 1000000);
                                 dlab::ui::TrainingRequest r;
                                 if (args.has("train-gan")) r.family = QStringLiteral("gan");
                                 r.sizePreset = QStringLiteral("tiny");
                                 r.steps = steps ? steps.value() : 300;
                                 r.batch = 32;
                                 r.lr = 1e-3;
                                 r.sampleEvery = int(std::max<qint64>(10, r.steps / 4));
                                 window.trainingView()->setRequest(r);
                                 window.trainingView()->start();
                             } else if (tab == 10) {
                                 auto steps = args.get_int("sds-steps", 1, 1000000);
                                 auto label = args.get_int("class", 0, 9);
                                 window.sdsView()->configure(label ? int(label.value()) : 7, args.has("3d"), 100.0,
                                                             steps ? int(steps.value()) : 300);
                                 window.sdsView()->start();
                             } else if (tab == 11) {
                                 auto steps = args.get_int("video-steps", 1, 1000);
                                 auto label = args.get_int("class", 0, 9);
                                 auto dir = args.get_int("direction", 0, 7);
                                 window.videoView()->configure(label ? int(label.value()) : 7, dir ? int(dir.value()) : 1, 3.0,
                                                               steps ? int(steps.value()) : 25);
                                 window.videoView()->start();
                             } else if (tab == 8) window.modelsView()->compare();
                             else if (tab == 2 && args.has("vae")) window.batchView()->generateVae();
                             else if (tab == 2) window.batchView()->generateStrip();
                             else if (tab == 3) window.toyView()->run();
                             else {
                                 if (auto label = args.get_int("class", 0, 9); args.has("class") && label)
                                     window.reverseView()->setClassIndex(int(label.value()));
                                 window.reverseView()->newChain();
                             }
                         }, Qt::QueuedConnection);
    }
    if (args.has("screenshot")) {
        const QString path = QString::fromStdString(args.get("screenshot"));
        auto shoot = [&window, path] {
            const bool ok = window.grab().save(path);
            std::cerr << (ok ? "saved screenshot " : "could not save screenshot ")
                      << path.toStdString() << "\n";
            QApplication::exit(ok ? 0 : 1);
        };
        if (tourStop >= 0) {
            QObject::connect(window.tour(), &dlab::ui::LectureTour::stopProduced, &window, [shoot](int) { QTimer::singleShot(600, shoot); });
            if (window.tour()->produced()) QTimer::singleShot(600, shoot);
        } else if (options.firstStart) {
            QObject::connect(window.reverseView(), &dlab::ui::ReverseView::demoFinished, &window, [shoot] { QTimer::singleShot(300, shoot); });
        } else if (play && tab == 5) {
            QObject::connect(window.explorerView(), &dlab::ui::ExplorerView::finished, &window, [&window, shoot](bool ok) {
                if (!ok || !window.explorerView()->rows(1).isEmpty()) QTimer::singleShot(300, shoot);
            });
        } else if (play && tab == 10) {
            QObject::connect(window.sdsView(), &dlab::ui::SdsView::finished, &window, [shoot] { QTimer::singleShot(300, shoot); });
        } else if (play && tab == 11) {
            // A second of the looping clip first.
            QObject::connect(window.videoView(), &dlab::ui::VideoView::finished, &window, [shoot] { QTimer::singleShot(1000, shoot); });
        } else if (play && tab == 8) {
            QObject::connect(window.modelsView(), &dlab::ui::ModelsView::finished, &window, [shoot] { QTimer::singleShot(300, shoot); });
        } else if (play && tab == 6) {
            QObject::connect(window.trainingView(), &dlab::ui::TrainingView::finished, &window,
                             [shoot] { QTimer::singleShot(300, shoot); });
        } else if (play && tab == 2) {
            QObject::connect(window.batchView(), &dlab::ui::BatchView::finished, &window,
                             [shoot] { QTimer::singleShot(300, shoot); });
        } else if (play && tab == 3) {
            // At the end of the replay of the recorded 2-D chain.
            QObject::connect(window.toyView(), &dlab::ui::ToyView::chainReady, &window,
                             [shoot] { QTimer::singleShot(3800, shoot); });
        } else if (play) {
            // After the chain, once the coalesced refresh has drawn the last frame.
            QObject::connect(window.reverseView(), &dlab::ui::ReverseView::chainFinished, &window,
                             [shoot] { QTimer::singleShot(300, shoot); });
        } else {
            QTimer::singleShot(800, &window, shoot);
        }
    }
    return QApplication::exec();
}
