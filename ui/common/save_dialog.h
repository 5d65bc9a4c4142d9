#pragma once
// The save dialog of the exports (images, chains, clips). A name typed without a suffix gets the
// default name's (".png", ".mp4"): the file's format is fixed, and the writers refuse another.

#include <QString>

class QWidget;

namespace dlab::ui {

/// `path` with `suffix` (such as ".png") appended when its file name has no suffix at all.
QString withDefaultSuffix(const QString& path, const QString& suffix);

/// Asks for an export file (`defaultName` such as "chain.mp4" sets the suggestion and the suffix
/// added to a bare name); empty when the user cancels.
QString askExportPath(QWidget* parent, const QString& title, const QString& defaultName, const QString& filter);

}  // namespace dlab::ui
