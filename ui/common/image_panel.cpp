#include "ui/common/image_panel.h"

#include <QPainter>

namespace dlab::ui {

ImagePanel::ImagePanel(const QString& caption, QWidget* parent) : QWidget(parent), m_caption(caption) {
    setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Expanding);
}

void ImagePanel::setImage(const QImage& image) {
    m_image = image;
    update();
}

void ImagePanel::setCaption(const QString& caption) {
    m_caption = caption;
    update();
}

void ImagePanel::paintEvent(QPaintEvent*) {
    QPainter p(this);
    const int captionH = fontMetrics().height() + 4;
    p.setPen(palette().color(QPalette::WindowText));
    p.drawText(QRect(0, 0, width(), captionH), Qt::AlignCenter, m_caption);
    const QRect area(2, captionH, width() - 4, height() - captionH - 2);
    p.fillRect(area, QColor(40, 40, 40));
    if (m_image.isNull()) return;
    QSize s = m_image.size().scaled(area.size(), Qt::KeepAspectRatio);
    const QRect target(area.x() + (area.width() - s.width()) / 2, area.y() + (area.height() - s.height()) / 2,
                       s.width(), s.height());
    p.setRenderHint(QPainter::SmoothPixmapTransform, false);
    p.drawImage(target, m_image);
}

}  // namespace dlab::ui
