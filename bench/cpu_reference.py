#!/usr/bin/python3
"""The CPU peer of `diffusionlab-cli bench --device cpu` (issue 17, item 6): the same UNet as a
bundled model (its architecture read from the model file's config; train_reference.py's UNet), one
guided denoising forward pass over 2B rows (conditional and unconditional halves) at each batch size
B, timed in Debian's python3-torch (1.13, the same oneDNN backend as Debian's LibTorch) as
  eager            the module as written, NCHW
  channels_last    the module and input in channels_last memory format
  jit-frozen       torch.jit.trace + torch.jit.freeze + optimize_for_inference (oneDNN weight
                   prepacking and conv fusions: PyTorch's own best CPU inference path in 1.13)
Prints the median ms per guided step. Speed does not depend on the weights: they are the random
initialisation of the same shapes.
Run it with Debian's interpreter (/usr/bin/python3) so that python3-torch is the torch imported.
"""
import argparse
import json
import struct
import time

import torch

from train_reference import UNet


def model_network(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    cfg = json.loads(header["__metadata__"]["dlab"])["network"]
    if cfg["kind"] != "unet" or cfg.get("num_res_blocks", 1) != 1 or cfg.get("frames", 0) or cfg.get("context_dim", 0):
        raise SystemExit(f"cpu_reference: {path}: only class-conditional UNets with one residual block per level")
    return cfg


def median_ms(fn, iters):
    for _ in range(3):
        fn()
    ms = []
    for _ in range(iters):
        a = time.perf_counter()
        fn()
        ms.append(1000 * (time.perf_counter() - a))
    ms.sort()
    return ms[len(ms) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, help="a DiffusionLab .safetensors model (its architecture is used)")
    p.add_argument("--batches", default="1,64")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default="eager,channels_last,jit-frozen")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = model_network(a.model)
    size = cfg["image_size"]
    net = UNet(ch=cfg["base_channels"], mult=tuple(cfg["channel_mult"]), attn_res=tuple(cfg["attention_resolutions"]),
               size=size, classes=cfg["num_classes"]).eval()
    print(f"peer: PyTorch {torch.__version__} (CPU, {torch.get_num_threads()} threads), "
          f"{sum(q.numel() for q in net.parameters())} parameters")
    print(f"{'batch':>6} {'variant':>14} {'ms/step (CFG)':>14} {'img-steps/s':>12}")
    with torch.inference_mode():
        for b in [int(v) for v in a.batches.split(",")]:
            x = torch.randn(2 * b, cfg["in_channels"], size, size)
            t = torch.full((2 * b,), 500, dtype=torch.long)
            y = torch.cat([torch.zeros(b, dtype=torch.long), torch.full((b,), cfg["num_classes"], dtype=torch.long)])
            for v in a.variants.split(","):
                if v == "eager":
                    fn = lambda: net(x, t, y)
                elif v == "channels_last":
                    cl = UNet(ch=cfg["base_channels"], mult=tuple(cfg["channel_mult"]), attn_res=tuple(cfg["attention_resolutions"]),
                              size=size, classes=cfg["num_classes"]).eval().to(memory_format=torch.channels_last)
                    xc = x.contiguous(memory_format=torch.channels_last)
                    fn = lambda: cl(xc, t, y)
                elif v == "jit-frozen":
                    with torch.no_grad():
                        traced = torch.jit.trace(net, (x, t, y), check_trace=False)
                        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
                    fn = lambda: frozen(x, t, y)
                else:
                    raise SystemExit(f"unknown variant {v}")
                ms = median_ms(fn, a.iters)
                print(f"{b:>6} {v:>14} {ms:>14.3f} {1000 * b / ms:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
