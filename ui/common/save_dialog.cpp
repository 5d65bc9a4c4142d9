#include "ui/common/save_dialog.h"

#include <QFileDialog>
#include <QFileInfo>

namespace dlab::ui {

QString withDefaultSuffix(const QString& path, const QString& suffix) {
    if (path.isEmpty() || !QFileInfo(path).suffix().isEmpty()) return path;
    return path + suffix;
}

QString askExportPath(QWidget* parent, const QString& title, const QString& defaultName, const QString& filter) {
    const QString path = QFileDialog::getSaveFileName(parent, title, defaultName, filter);
    return withDefaultSuffix(path, QLatin1Char('.') + QFileInfo(defaultName).suffix());
}

}  // namespace dlab::ui
