#!/usr/bin/env python3
"""How far two weight files that diffusionlab-cli wrote (model.safetensors of two runs) are apart
(installer/gpu-train-cl.sh: the same run trained plain and channels-last):
    compare_weights.py A.safetensors B.safetensors
prints the tensors compared, the largest absolute difference, the largest relative one
(|a - b| / max|a| of its tensor) and the tensor where it is.
"""
import sys

from safetensors.torch import load_file


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
    if a.keys() != b.keys():
        raise SystemExit(f"the files hold different tensors: {sorted(a.keys() ^ b.keys())[:5]}")
    worst_abs, worst_rel, where = 0.0, 0.0, ""
    for k in sorted(a):
        x, y = a[k].double(), b[k].double()
        if x.shape != y.shape:
            raise SystemExit(f"{k}: shapes {tuple(x.shape)} and {tuple(y.shape)}")
        d = (x - y).abs().max().item() if x.numel() else 0.0
        r = d / max(x.abs().max().item(), 1e-12) if x.numel() else 0.0
        worst_abs = max(worst_abs, d)
        if r > worst_rel:
            worst_rel, where = r, k
    print(f"{len(a)} tensors: largest |a - b| {worst_abs:.2e}, largest relative {worst_rel:.2e} ({where})")


if __name__ == "__main__":
    main()
