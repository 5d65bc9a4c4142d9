#!/usr/bin/env python3
"""Largest and mean absolute differences between sample tensors that `diffusionlab-cli sample
--tensors` wrote in several modes (installer/gpu-fused.sh, gpu-half.sh):
    compare_samples.py MODEL NAME=FILE ... --pairs A-B,C-D
prints one line per pair: MODEL: max |A - B| = ..., mean ...
"""
import argparse

from safetensors.torch import load_file


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("files", nargs="+", help="NAME=FILE")
    p.add_argument("--pairs", required=True, help="comma-separated A-B pairs of NAMEs")
    a = p.parse_args()
    images = {}
    for entry in a.files:
        name, path = entry.split("=", 1)
        images[name] = load_file(path)["images"].float()
    for pair in a.pairs.split(","):
        x, y = pair.split("-", 1)
        d = (images[x] - images[y]).abs()
        print(f"{a.model}: images {tuple(images[x].shape)}, max |{x} - {y}| = {d.max().item():.2e}, "
              f"mean {d.mean().item():.2e}")


if __name__ == "__main__":
    main()
