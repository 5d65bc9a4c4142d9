// Image files: PNG round trip with tEXt chunks, grids, errors for unreadable files, image folders.
#include <cmath>

#include <QtTest/QtTest>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "imaging/image_folder.h"
#include "imaging/image_io.h"

using namespace dlab;

class TestImageIo : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void pngRoundTripWithText() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("x.png").toStdString();
        at::Tensor img = at::rand({3, 20, 30}, at::TensorOptions().dtype(at::kFloat));
        auto st = imaging::write_png(path, imaging::tensor_to_mat(img),
                                     {{"parameters", "seed=7 guidance=3"}});
        QVERIFY2(st.ok(), st.error().c_str());
        QFile f(QString::fromStdString(path));
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QByteArray bytes = f.readAll();
        const int at = bytes.indexOf(QByteArray("tEXtparameters\0seed=7 guidance=3", 32));
        QVERIFY(at > 0);
        auto back = imaging::read_image(path, 3);
        QVERIFY2(back.ok(), back.error().c_str());
        QCOMPARE(back->sizes().vec(), img.sizes().vec());
        // 8-bit quantisation: at most half a level of error.
        QVERIFY((back.value() - img).abs().max().item<double>() <= 0.5 / 255.0 + 1e-6);
    }

    void grid() {
        at::Tensor batch = at::zeros({5, 1, 4, 4});
        at::Tensor g = imaging::make_grid(batch, 3, 1, 1.0);
        QCOMPARE(g.size(0), int64_t(1));
        QCOMPARE(g.size(1), int64_t(2 * 5 + 1));
        QCOMPARE(g.size(2), int64_t(3 * 5 + 1));
        QCOMPARE(g.sum().item<double>(), double(g.numel() - 5 * 16));
    }

    void unreadableFilesAreErrors() {
        QTemporaryDir dir;
        auto missing = imaging::read_image(dir.filePath("nope.png").toStdString(), 1);
        QVERIFY(!missing.ok());
        QVERIFY(QString::fromStdString(missing.error()).contains("no such file"));
        const QString junk = dir.filePath("junk.png");
        QFile f(junk);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("this is not a png");
        f.close();
        auto bad = imaging::read_image(junk.toStdString(), 1);
        QVERIFY(!bad.ok());
        QVERIFY(QString::fromStdString(bad.error()).contains("junk.png"));
        // Found by fuzz/fuzz_image: a file OpenCV took for DICOM made its GDCM reader abort the
        // process. Formats outside the list never reach OpenCV now: a message, not a crash.
        std::vector<unsigned char> dicomish(256, 0);
        dicomish[0x1a] = 0x01;
        dicomish[0x19] = 0x10;
        const char dicm[] = {'D', 'I', 'C', 'M'};
        std::copy(dicm, dicm + 4, dicomish.begin() + 128);
        for (int channels : {1, 3}) {
            auto r = imaging::decode_image(dicomish, "scan.dcm", channels);
            QVERIFY(!r);
            QVERIFY2(r.error().rfind("scan.dcm: not a PNG, JPEG", 0) == 0, r.error().c_str());
        }
        // The supported formats still decode.
        cv::Mat m(4, 5, CV_8UC3, cv::Scalar(10, 20, 30));
        for (const char* ext : {".png", ".bmp", ".jpg", ".tiff", ".pgm"}) {
            std::vector<unsigned char> buf;
            cv::Mat src = std::string(ext) == ".pgm" ? cv::Mat(4, 5, CV_8UC1, cv::Scalar(9)) : m;
            QVERIFY(cv::imencode(ext, src, buf));
            auto r = imaging::decode_image(buf, std::string("x") + ext, 3);
            QVERIFY2(r && r->cols == 5 && r->rows == 4, r ? ext : r.error().c_str());
        }
    }

    void absurdImageSizesAreRefusedByName() {
        QTemporaryDir dir;
        QDir(dir.path()).mkpath("set");
        // A real 999999x1 PNG (1 MB of pixels): centre-cropped before resizing, it costs nothing.
        cv::Mat line(1, 999999, CV_8UC1, cv::Scalar(200));
        QVERIFY(cv::imwrite(dir.filePath("set/line.png").toStdString(), line));
        for (int i = 0; i < 2; ++i) {
            cv::Mat img(20, 20, CV_8UC3, cv::Scalar(10 * i, 50, 90));
            QVERIFY(cv::imwrite(dir.filePath(QString("set/ok%1.png").arg(i)).toStdString(), img));
        }
        // A PNG whose header declares 100000x100000 (its data is junk): refused before decoding.
        QByteArray png("\x89PNG\r\n\x1a\n", 8);
        png += QByteArray("\x00\x00\x00\x0dIHDR", 8);
        png += QByteArray("\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00", 13);
        png += QByteArray(64, 'x');
        QFile f(dir.filePath("set/huge.png"));
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(png);
        f.close();
        auto one = imaging::read_image(dir.filePath("set/huge.png").toStdString(), 3);
        QVERIFY(!one.ok());
        QVERIFY2(QString::fromStdString(one.error()).contains("huge.png") &&
                     QString::fromStdString(one.error()).contains("100000x100000"), one.error().c_str());
        imaging::ImageFolderOptions o;
        o.size = 16;
        o.channels = 3;
        imaging::ImageFolderReport report;
        auto d = imaging::load_image_folder(dir.filePath("set").toStdString(), o, &report);
        QVERIFY2(d.ok(), d.ok() ? "" : d.error().c_str());
        std::string skipped;
        for (const auto& r : report.skipped) skipped += r + "; ";
        QVERIFY2(d->x.size(0) == 3, skipped.c_str());  // the line and the two small ones; the huge one skipped
        QCOMPARE(report.skipped.size(), size_t(1));
        QVERIFY(QString::fromStdString(report.skipped.front()).contains("huge.png"));
        // The line's centre pixel, resized: grey 200 everywhere.
        QVERIFY(std::abs(d->x.select(0, 1).mean().item<double>() - (200 / 127.5 - 1)) < 1e-2 ||
                std::abs(d->x.select(0, 0).mean().item<double>() - (200 / 127.5 - 1)) < 1e-2 ||
                std::abs(d->x.select(0, 2).mean().item<double>() - (200 / 127.5 - 1)) < 1e-2);
    }

    void imageFolderWithClasses() {
        QTemporaryDir dir;
        QDir(dir.path()).mkpath("b_dark");
        QDir(dir.path()).mkpath("a_bright");
        QDir(dir.path()).mkpath("empty");
        // 40x20 images: a centre band of 20 columns at the class's grey level, black margins that
        // the centre crop must remove.
        for (int i = 0; i < 3; ++i) {
            for (auto [cls, level] : {std::pair<const char*, double>{"a_bright", 1.0}, {"b_dark", 0.2}}) {
                at::Tensor img = at::zeros({3, 20, 40});
                img.narrow(2, 10, 20).fill_(level);
                const QString path = dir.filePath(QString("%1/%2.png").arg(cls).arg(i));
                QVERIFY(imaging::write_png(path.toStdString(), imaging::tensor_to_mat(img)).ok());
            }
        }
        QFile junk(dir.filePath("b_dark/broken.jpg"));
        QVERIFY(junk.open(QIODevice::WriteOnly));
        junk.write("not a jpeg");
        junk.close();
        imaging::ImageFolderOptions opt;
        opt.size = 8;
        opt.channels = 1;
        imaging::ImageFolderReport report;
        auto d = imaging::load_image_folder(dir.path().toStdString(), opt, &report);
        QVERIFY2(d.ok(), d.error().c_str());
        QCOMPARE(d->x.sizes().vec(), (std::vector<int64_t>{6, 1, 8, 8}));
        QCOMPARE(d->num_classes, int64_t(2));
        QCOMPARE(d->class_names, (std::vector<std::string>{"a_bright", "b_dark"}));
        QCOMPARE(d->labels.sum().item<int64_t>(), int64_t(3));
        QCOMPARE(report.skipped.size(), size_t(1));
        QVERIFY(QString::fromStdString(report.skipped[0]).contains("broken.jpg"));
        // Centre crop keeps only the band: class 0 is all white (1), class 1 all at 0.2 -> -0.6.
        for (int64_t i = 0; i < 6; ++i) {
            const double expect = d->labels[i].item<int64_t>() == 0 ? 1.0 : 0.2 * 2 - 1;
            QVERIFY2((d->x[i] - expect).abs().max().item<double>() < 0.01, qPrintable(QString::number(i)));
        }
        opt.channels = 3;
        auto rgb = imaging::load_image_folder(dir.path().toStdString(), opt);
        QVERIFY(rgb.ok());
        QCOMPARE(rgb->x.size(1), int64_t(3));
    }

    void imageFolderWithoutClassesAndErrors() {
        QTemporaryDir dir;
        for (int i = 0; i < 2; ++i)
            QVERIFY(imaging::write_png(dir.filePath(QString("%1.png").arg(i)).toStdString(),
                                       imaging::tensor_to_mat(at::rand({1, 12, 12}))).ok());
        imaging::ImageFolderOptions opt;
        opt.size = 12;
        auto d = imaging::load_image_folder(dir.path().toStdString(), opt);
        QVERIFY2(d.ok(), d.error().c_str());
        QCOMPARE(d->num_classes, int64_t(0));
        QCOMPARE(d->x.size(0), int64_t(2));
        QTemporaryDir none;
        auto e = imaging::load_image_folder(none.path().toStdString(), opt);
        QVERIFY(!e.ok());
        QVERIFY2(QString::fromStdString(e.error()).contains("no readable images"), e.error().c_str());
        auto missing = imaging::load_image_folder(none.filePath("nope").toStdString(), opt);
        QVERIFY(!missing.ok());
        QVERIFY(QString::fromStdString(missing.error()).contains("not a folder"));
    }
};

QTEST_APPLESS_MAIN(TestImageIo)
#include "test_image_io.moc"
