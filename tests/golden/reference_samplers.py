#!/usr/bin/env python3
"""Independent pure-Python reference for the golden sampler tests (no torch, no numpy).

1-D data N(mu, s^2); the exact noise prediction for x_t is
    eps(x_t) = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar).
Cosine schedule T = 1000 (Nichol & Dhariwal 2021), trailing timestep spacing, DDIM with eta = 0
(Song et al. 2021) and DPM-Solver++(2M) (Lu et al. 2022) with a first-order last step.
Prints C++ initialiser lists for tests/core/test_samplers.cpp.
"""
import math

T, S_OFF, MU, SD = 1000, 0.008, 0.7, 0.2
X_T = [-2.0, -0.5, 0.0, 1.0, 2.5]


def abars():
    f = lambda u: math.cos((u + S_OFF) / (1 + S_OFF) * math.pi / 2) ** 2
    out, prod = [], 1.0
    for i in range(T):
        beta = min(1 - f((i + 1) / T) / f(i / T), 0.999)
        prod *= 1 - beta
        out.append(prod)
    return out


AB = abars()


def ab(t):
    return 1.0 if t < 0 else AB[t]


def trailing(n):
    return [round(T - i * T / n) - 1 for i in range(n)]


def predict(x, t):
    a = ab(t)
    eps = math.sqrt(1 - a) * (x - math.sqrt(a) * MU) / (a * SD * SD + 1 - a)
    x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
    return x0, eps


def ddim(x, n):
    ts = trailing(n)
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < n else -1
        x0, eps = predict(x, t)
        x = math.sqrt(ab(s)) * x0 + math.sqrt(1 - ab(s)) * eps
    return x


def dpmpp2m(x, n):
    ts = trailing(n)
    lam = lambda t: 0.5 * math.log(ab(t) / (1 - ab(t)))
    prev_x0, prev_h = None, None
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < n else -1
        x0, _ = predict(x, t)
        if s < 0:
            x = x0
            break
        h = lam(s) - lam(t)
        d = x0
        if prev_x0 is not None:
            r = prev_h / h
            d = (1 + 0.5 / r) * x0 - (0.5 / r) * prev_x0
        x = math.sqrt(1 - ab(s)) / math.sqrt(1 - ab(t)) * x - math.sqrt(ab(s)) * math.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x


print("#define GOLDEN_DDIM_10 " + ", ".join("%.17g" % ddim(x, 10) for x in X_T))
print("#define GOLDEN_DPMPP_8 " + ", ".join("%.17g" % dpmpp2m(x, 8) for x in X_T))
