#pragma once
// The one way to include QCustomPlot: its header uses Qt's `signals` and `foreach` keywords, which
// this project turns off (QT_NO_KEYWORDS) because they break LibTorch's headers.
#include <QtGlobal>

#ifndef signals
#define signals Q_SIGNALS
#define DLAB_QCP_UNDEF_SIGNALS
#endif
#ifndef foreach
#define foreach Q_FOREACH
#define DLAB_QCP_UNDEF_FOREACH
#endif

#include <qcustomplot.h>

#ifdef DLAB_QCP_UNDEF_SIGNALS
#undef signals
#undef DLAB_QCP_UNDEF_SIGNALS
#endif
#ifdef DLAB_QCP_UNDEF_FOREACH
#undef foreach
#undef DLAB_QCP_UNDEF_FOREACH
#endif
