#pragma once

#include <QImage>
#include <QWidget>

namespace dlab::ui {

/// Shows an image scaled to fit (nearest neighbour, so pixels stay crisp) with a caption.
class ImagePanel : public QWidget {
    Q_OBJECT
public:
    explicit ImagePanel(const QString& caption, QWidget* parent = nullptr);
    void setImage(const QImage& image);
    void setCaption(const QString& caption);
    const QImage& image() const { return m_image; }
    QSize sizeHint() const override { return {180, 200}; }
    QSize minimumSizeHint() const override { return {90, 100}; }

protected:
    void paintEvent(QPaintEvent* event) override;

private:
    QImage m_image;
    QString m_caption;
};

}  // namespace dlab::ui
