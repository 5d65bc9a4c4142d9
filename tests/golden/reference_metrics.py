#!/usr/bin/env python3
"""Golden numbers for tests/core/test_metrics.cpp, computed independently in plain Python (no
LibTorch): improved precision/recall (k = 3), Inception Score (2 splits) and the per-class mean
pairwise distance on small fixed sets. Run: python3 tests/golden/reference_metrics.py"""
import math

REAL = [(0.0, 0.0), (1.0, 0.2), (0.3, 1.1), (2.0, 2.0), (-1.0, 0.5), (0.5, -0.7),
        (1.5, 1.0), (-0.4, -1.2), (2.2, 0.1), (0.9, 1.9), (-1.5, -0.3), (0.1, 0.6)]
FAKE = [(0.2, 0.1), (3.5, 3.5), (1.1, 0.9), (-0.8, 0.2), (0.4, -0.5),
        (5.0, -2.0), (1.9, 1.7), (0.0, 1.0), (-2.5, 2.5), (0.7, 0.3)]
LOGITS = [(2.0, 0.1, -1.0, 0.3), (0.2, 1.5, 0.0, -0.5), (-1.0, 0.0, 3.0, 0.2),
          (0.5, 0.5, 0.5, 0.5), (1.0, -2.0, 0.0, 2.5), (0.0, 0.3, -0.2, 1.1)]
LABELS = [0, 1, 0, 1, 1, 0, 2, 0, 2, 1]  # for FAKE (class 2 has 2 points)


def dist(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def kth(points, k):
    return [sorted(dist(p, q) for j, q in enumerate(points) if j != i)[k - 1] for i, p in enumerate(points)]


def coverage(queries, points, radii):
    return sum(any(dist(q, p) <= r for p, r in zip(points, radii)) for q in queries) / len(queries)


def inception(logits, splits):
    scores = []
    n = len(logits)
    for s in range(splits):
        part = logits[s * n // splits:(s + 1) * n // splits]
        probs = []
        for row in part:
            m = max(row)
            e = [math.exp(v - m) for v in row]
            z = sum(e)
            probs.append([v / z for v in e])
        py = [sum(p[c] for p in probs) / len(probs) for c in range(len(probs[0]))]
        kl = sum(sum(p[c] * (math.log(p[c]) - math.log(py[c])) for c in range(len(py))) for p in probs) / len(probs)
        scores.append(math.exp(kl))
    mean = sum(scores) / len(scores)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in scores) / len(scores))


def diversity(points, labels):
    per = []
    for c in sorted(set(labels)):
        g = [p for p, l in zip(points, labels) if l == c]
        if len(g) < 2:
            continue
        per.append(sum(dist(a, b) for i, a in enumerate(g) for j, b in enumerate(g) if i != j) / (len(g) * (len(g) - 1)))
    return sum(per) / len(per)


print("precision %.12f" % coverage(FAKE, REAL, kth(REAL, 3)))
print("recall %.12f" % coverage(REAL, FAKE, kth(FAKE, 3)))
print("is mean %.12f std %.12f" % inception(LOGITS, 2))
print("diversity %.12f" % diversity(FAKE, LABELS))
print("k=1 precision %.12f" % coverage(FAKE, REAL, kth(REAL, 1)))
print("k=1 recall %.12f" % coverage(REAL, FAKE, kth(FAKE, 1)))
