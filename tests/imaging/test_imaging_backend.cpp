// The imaging API every backend offers (no cv::Mat), built twice: against the OpenCV backend
// (test_imaging_backend_opencv) and against the Qt one (test_imaging_backend_qt), which a GUI built
// without OpenCV uses. Same files, same answers within what each codec/resampler may differ by.
#include <QtTest/QtTest>

#include <ATen/ATen.h>

#include "imaging/image_folder.h"
#include "imaging/image_io.h"

using namespace dlab;

class TestImagingBackend : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void pngFromATensorRoundTrips() {
        QTemporaryDir dir;
        for (int channels : {1, 3}) {
            const std::string path = dir.filePath(QStringLiteral("x%1.png").arg(channels)).toStdString();
            const at::Tensor img = at::rand({channels, 17, 23});
            auto st = imaging::write_png(path, img, {{"parameters", "seed=7"}});
            QVERIFY2(st.ok(), st.error().c_str());
            QFile f(QString::fromStdString(path));
            QVERIFY(f.open(QIODevice::ReadOnly));
            QVERIFY(f.readAll().indexOf(QByteArray("tEXtparameters\0seed=7", 21)) > 0);
            auto back = imaging::read_image(path, channels);
            QVERIFY2(back.ok(), back.error().c_str());
            QCOMPARE(back->sizes().vec(), img.sizes().vec());
            QVERIFY((back.value() - img).abs().max().item<double>() <= 0.5 / 255.0 + 1e-6);
            QVERIFY(!QFile::exists(QString::fromStdString(path) + ".part"));
        }
        // A grey file read as RGB repeats the grey level in each channel.
        auto rgb = imaging::read_image(dir.filePath(QStringLiteral("x1.png")).toStdString(), 3);
        QVERIFY(rgb.ok() && rgb->size(0) == 3);
        QVERIFY(at::equal(rgb.value()[0], rgb.value()[2]));
    }

    void badFilesAreNamedErrors() {
        QTemporaryDir dir;
        const QString junk = dir.filePath(QStringLiteral("junk.png"));
        QFile f(junk);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("\x89PNG this is not really a png");
        f.close();
        auto bad = imaging::read_image(junk.toStdString(), 1);
        QVERIFY(!bad.ok() && QString::fromStdString(bad.error()).contains(QStringLiteral("junk.png")));
        auto huge = imaging::read_image(dir.filePath(QStringLiteral("none.png")).toStdString(), 1);
        QVERIFY(!huge.ok() && QString::fromStdString(huge.error()).contains(QStringLiteral("no such file")));
        QVERIFY(!imaging::write_png(dir.filePath(QStringLiteral("no/such/dir/x.png")).toStdString(), at::rand({1, 4, 4})).ok());
        // The file is PNG whatever its name: another suffix is refused, nothing written; any case of .png is fine.
        const QString jpg = dir.filePath(QStringLiteral("x.jpg"));
        auto named = imaging::write_png(jpg.toStdString(), at::rand({1, 4, 4}));
        QVERIFY(!named.ok() && QString::fromStdString(named.error()).contains(QStringLiteral("give a name ending in .png")));
        QVERIFY(!QFile::exists(jpg));
        QVERIFY(imaging::write_png(dir.filePath(QStringLiteral("upper.PNG")).toStdString(), at::rand({1, 4, 4})).ok());
    }

    void foldersAreCroppedAndResized() {
        // Two classes; a wide image whose centre square is white on a black frame: after the
        // centre crop the 8x8 image is white throughout, whichever resampler the backend has.
        QTemporaryDir dir;
        QVERIFY(QDir(dir.path()).mkpath(QStringLiteral("a")) && QDir(dir.path()).mkpath(QStringLiteral("b")));
        at::Tensor wide = at::zeros({1, 20, 60});
        wide.narrow(2, 20, 20).fill_(1.0);
        QVERIFY(imaging::write_png(dir.filePath(QStringLiteral("a/wide.png")).toStdString(), wide).ok());
        QVERIFY(imaging::write_png(dir.filePath(QStringLiteral("b/small.png")).toStdString(), at::full({3, 4, 4}, 0.5)).ok());
        QFile junk(dir.filePath(QStringLiteral("b/broken.png")));
        QVERIFY(junk.open(QIODevice::WriteOnly));
        junk.write("not an image");
        junk.close();
        imaging::ImageFolderReport report;
        auto d = imaging::load_image_folder(dir.path().toStdString(), {8, 1}, &report);
        QVERIFY2(d.ok(), d.ok() ? "" : d.error().c_str());
        QCOMPARE(d->x.sizes().vec(), (std::vector<int64_t>{2, 1, 8, 8}));
        QCOMPARE(d->num_classes, int64_t(2));
        QCOMPARE(d->labels[0].item<int64_t>(), int64_t(0));
        QVERIFY(d->x[0].min().item<double>() > 0.99);                            // white after the crop
        QVERIFY(std::abs(d->x[1].mean().item<double>() - 0.0) < 0.02);           // grey 0.5 -> 0 in [-1, 1], upscaled
        QCOMPARE(int(report.skipped.size()), 1);
        QVERIFY(QString::fromStdString(report.skipped[0]).contains(QStringLiteral("broken.png")));
    }

    void videoIsWrittenOrRefusedByName() {
        QTemporaryDir dir;
        const std::string path = dir.filePath(QStringLiteral("clip.mp4")).toStdString();
        auto st = imaging::write_video(path, {at::rand({1, 8, 8}), at::rand({1, 8, 8})}, 8.0, 4);
#ifdef DLAB_IMAGING_OPENCV
        QVERIFY2(st.ok(), st.ok() ? "" : st.error().c_str());
        QVERIFY(QFileInfo(QString::fromStdString(path)).size() > 0);
#else
        QVERIFY(!st.ok() && QString::fromStdString(st.error()).contains(QStringLiteral("clip.mp4")));
        QVERIFY(!QFile::exists(QString::fromStdString(path)));
#endif
        QVERIFY(!QFile::exists(QString::fromStdString(path) + ".part.mp4"));
        // Always MP4: another name is refused before anything is encoded.
        const QString gif = dir.filePath(QStringLiteral("clip.gif"));
        auto named = imaging::write_video(gif.toStdString(), {at::rand({1, 8, 8})}, 8.0, 4);
        QVERIFY(!named.ok() && QString::fromStdString(named.error()).contains(QStringLiteral("give a name ending in .mp4")));
        QVERIFY(!QFile::exists(gif));
    }
};

QTEST_GUILESS_MAIN(TestImagingBackend)
#include "test_imaging_backend.moc"
