// Image files: PNG round trip with tEXt chunks, grids, and errors for unreadable files.
#include <QtTest/QtTest>

#include <ATen/ATen.h>

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
    }
};

QTEST_APPLESS_MAIN(TestImageIo)
#include "test_image_io.moc"
