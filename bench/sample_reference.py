#!/usr/bin/env python3
"""The peer of `diffusionlab-cli bench` (issue 17): the same UNet as core/networks/network.cpp (from
train_reference.py: base 32, multipliers 1-2-2, attention at 7x7, 10 classes + null), one guided
denoising forward pass over 2B rows (conditional and unconditional halves), timed in PyTorch eager,
with torch.compile (default and reduce-overhead) and as a hand-made CUDA graph, at each batch size B.
float32 with TF32 convolutions allowed, as the project's default. Prints the median ms per pass.
Speed does not depend on the weights: they are the random initialisation.
"""
import argparse
import time

import torch

from train_reference import UNet


def median_ms(fn, iters):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(iters):
        a = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ms.append(1000 * (time.perf_counter() - a))
    ms.sort()
    return ms[len(ms) // 2]


def kernels(fn, n, rows=24):
    """Prints the GPU kernels of n calls of fn: total kernel time a call, then the largest by name."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    by_name = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            t, c = by_name.get(e.name, (0.0, 0))
            by_name[e.name] = (t + e.device_time_total, c + 1)  # microseconds
    total = sum(t for t, _ in by_name.values())
    print(f"peer profile of {n} passes: GPU kernel time {total / n / 1000:.3f} ms a pass")
    for name, (t, c) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:rows]:
        print(f"  {name[:60]:<60} {t / n / 1000:7.3f} ms/pass {c / n:6.1f} calls/pass {100 * t / total:5.1f} %")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batches", default="1,256")
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--variants", default="eager,graph,compile,compile-ro")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="weights and activations (the half types: DiffusionLab's DLAB_HALF=fp16 / bf16)")
    p.add_argument("--channels-last", action="store_true", help="the network and its input in channels_last")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after timing, the GPU kernels of N more passes (torch.profiler), ms per pass by kernel")
    a = p.parse_args()
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    dtype = getattr(torch, a.dtype)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    net = UNet().cuda().eval().to(dtype=dtype, memory_format=fmt)
    print(f"peer: PyTorch {torch.__version__}, {torch.cuda.get_device_name()}, "
          f"{sum(p.numel() for p in net.parameters())} parameters, {a.dtype}"
          f"{', channels_last' if a.channels_last else ''}")
    print(f"{'batch':>6} {'variant':>12} {'ms/step (CFG)':>14} {'img-steps/s':>12}")
    variants = a.variants.split(",")
    with torch.inference_mode():
        for b in [int(v) for v in a.batches.split(",")]:
            x = torch.randn(2 * b, 1, 28, 28, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
            t = torch.full((2 * b,), 500, device="cuda", dtype=torch.long)
            y = torch.cat([torch.zeros(b, dtype=torch.long), torch.full((b,), 10, dtype=torch.long)]).cuda()
            for v in variants:
                if v == "eager":
                    fn = lambda: net(x, t, y)
                elif v == "graph":
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for _ in range(3):
                            net(x, t, y)
                    torch.cuda.current_stream().wait_stream(s)
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        out = net(x, t, y)
                    fn = lambda: (g.replay(), out)
                else:
                    mode = "reduce-overhead" if v == "compile-ro" else "default"
                    c = torch.compile(net, mode=mode)
                    fn = lambda: c(x, t, y)
                ms = median_ms(fn, a.iters)
                print(f"{b:>6} {v:>12} {ms:>14.3f} {1000 * b / ms:>12.1f}", flush=True)
                if a.profile > 0:
                    kernels(fn, a.profile)


if __name__ == "__main__":
    main()
