#!/usr/bin/env python3
"""Plain PyTorch (Python, eager) training loop of the same UNet, batch and precision as
diffusionlab-cli train, for a side-by-side speed comparison on the same GPU (issue: training speed).

Same architecture as core/networks/network.cpp (base 32, multipliers 1-2-2, one residual block per level,
attention at 7x7 with 4 heads, 10 classes + null), eps-prediction MSE on the cosine schedule,
AdamW (foreach) lr 3e-4, gradient clipping 1.0, EMA 0.9995, p_uncond 0.1, float32, data on the GPU.
Prints images/s over the timed steps.

--mode picks the peer: eager (default), compile (torch.compile of the network, default mode),
compile-ro (torch.compile mode="reduce-overhead": CUDA graphs of forward and backward), graph (the
whole step -- batch draw, forward, backward, clip, capturable AdamW, EMA -- captured as one CUDA
graph by hand and replayed: the most a PyTorch user can take without writing kernels).
"""
import argparse
import gzip
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], 1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups=8, dropout=0.1):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, ch, heads=4, groups=8):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        d = c // self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, d, h * w).unbind(1)
        a = torch.softmax(q.transpose(2, 3) @ k / math.sqrt(d), -1)
        return x + self.proj((v @ a.transpose(2, 3)).reshape(b, c, h, w))


class UNet(nn.Module):
    def __init__(self, ch=32, mult=(1, 2, 2), attn_res=(7,), size=28, classes=10):
        super().__init__()
        temb = 4 * ch
        self.ch = ch
        self.temb1, self.temb2 = nn.Linear(ch, temb), nn.Linear(temb, temb)
        self.label_emb = nn.Embedding(classes + 1, temb)
        self.conv_in = nn.Conv2d(1, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, c, res = [ch], ch, size
        for l, m in enumerate(mult):
            out = ch * m
            self.down.append(nn.ModuleList([ResBlock(c, out, temb), Attention(out) if res in attn_res else nn.Identity()]))
            c = out
            skips.append(c)
            if l + 1 < len(mult):
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                res //= 2
        self.mid1, self.mid_attn, self.mid2 = ResBlock(c, c, temb), Attention(c), ResBlock(c, c, temb)
        self.up = nn.ModuleList()
        for l in reversed(range(len(mult))):
            out = ch * mult[l]
            for _ in range(2):
                self.up.append(nn.ModuleList([ResBlock(c + skips.pop(), out, temb), Attention(out) if res in attn_res else nn.Identity()]))
                c = out
            if l > 0:
                self.up.append(nn.Conv2d(c, c, 3, padding=1))
                res *= 2
        self.norm_out = nn.GroupNorm(8, c)
        self.conv_out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x, t, y):
        emb = self.temb2(F.silu(self.temb1(timestep_embedding(t, self.ch).to(x.dtype)))) + self.label_emb(y)
        h = self.conv_in(x)
        hs = [h]
        for m in self.down:
            h = m[1](m[0](h, emb)) if isinstance(m, nn.ModuleList) else m(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for m in self.up:
            if isinstance(m, nn.ModuleList):
                h = m[1](m[0](torch.cat([h, hs.pop()], 1), emb))
            else:
                h = m(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def load_images(path):
    with gzip.open(path) as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16)
    return torch.from_numpy(raw.copy()).float().view(-1, 1, 28, 28) / 127.5 - 1


def profile_steps(n, step, label, top=25):
    """Runs step() n times under torch.profiler and prints the CUDA kernels by total time (per step)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            step()
        torch.cuda.synchronize()
    kernels = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            name = e.name if len(e.name) <= 60 else e.name[:57] + "..."
            total, calls = kernels.get(name, (0.0, 0))
            kernels[name] = (total + e.device_time_total if hasattr(e, "device_time_total") else total + e.cuda_time_total,
                             calls + 1)
    whole = sum(v[0] for v in kernels.values())
    print(f"== profile: {label}, {n} steps: GPU kernel time {whole / n / 1000:.3f} ms a step")
    for name, (total, calls) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{name:60s} {total / n / 1000:8.3f} ms/step {calls / n:6.1f} calls/step {100 * total / whole:5.1f} %")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=128, help="global batch (split over the ranks under torchrun)")
    ap.add_argument("--mode", default="eager", choices=["eager", "compile", "compile-ro", "graph"])
    ap.add_argument("--channels-last", action="store_true",
                    help="the network's weights and activations in the channels-last (NHWC) layout")
    ap.add_argument("--profile", type=int, default=0,
                    help="after the timed steps, profile this many more (torch.profiler, CUDA kernels) and print "
                         "the kernels that take the most time, per step")
    a = ap.parse_args()
    # Under torchrun: PyTorch's DistributedDataParallel over NCCL, the peer of diffusionlab-cli
    # train --nproc-per-node (each rank a 1/W slice of the global batch, gradients averaged).
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dev = torch.device("cuda", torch.cuda.current_device())
    x_all = load_images(a.data + "/train-images-idx3-ubyte.gz").to(dev)
    with gzip.open(a.data + "/train-labels-idx1-ubyte.gz") as f:
        y_all = torch.from_numpy(np.frombuffer(f.read(), np.uint8, offset=8).copy()).long().to(dev)
    T, s = 1000, 0.008
    fcos = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = torch.tensor([min(1 - fcos((i + 1) / T) / fcos(i / T), 0.999) for i in range(T)], dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    sa, s1 = abar.sqrt().float().to(dev), (1 - abar).sqrt().float().to(dev)
    torch.manual_seed(0)
    net = UNet().to(dev)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    ema = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=0.0, foreach=True)
    if rank == 0:
        print("parameters", sum(p.numel() for p in net.parameters()))
    model = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index])
    if a.batch % world:
        raise SystemExit(f"--batch {a.batch} is not a multiple of the {world} ranks")
    B = a.batch // world
    torch.manual_seed(1 + rank)
    if a.mode in ("compile", "compile-ro"):
        if world > 1:
            raise SystemExit("--mode compile runs on one GPU")
        model = torch.compile(net, mode="reduce-overhead" if a.mode == "compile-ro" else "default")
    if a.mode == "graph":
        if world > 1:
            raise SystemExit("--mode graph runs on one GPU")
        opt = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=0.0, foreach=True, capturable=True)
    params = list(net.parameters())

    def train_step():
        idx = torch.randint(0, x_all.shape[0], (B,), device=dev)
        x0, y = x_all[idx], y_all[idx]
        y = torch.where(torch.rand(B, device=dev) < 0.1, torch.full_like(y, 10), y)
        t = torch.randint(0, T, (B,), device=dev)
        eps = torch.randn_like(x0)
        xt = sa[t].view(B, 1, 1, 1) * x0 + s1[t].view(B, 1, 1, 1) * eps
        if a.channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        loss = F.mse_loss(model(xt, t, y), eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # no host sync in 2.x: the scale stays on the device
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.9995)
            torch._foreach_add_(ema, params, alpha=0.0005)
        return loss.detach()

    graph = None
    for step in range(a.warmup_steps + a.steps):
        if step == a.warmup_steps:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        if a.mode != "graph":
            opt.zero_grad(set_to_none=True)
            loss = train_step()
            continue
        if graph is None and step == 3:  # three eager steps on a side stream, then the capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(graph):
                static_loss = train_step()
        if graph is not None:
            graph.replay()
            loss = static_loss
        else:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                opt.zero_grad(set_to_none=True)
                loss = train_step()
            torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if a.profile and rank == 0:
        profile_steps(a.profile, lambda: graph.replay() if graph is not None else (opt.zero_grad(set_to_none=True), train_step()),
                      f"pytorch {a.mode}, batch {B}")
    if world > 1:
        torch.distributed.barrier()
    if rank == 0:
        label = f"pytorch DDP ({world} GPUs)" if world > 1 else f"pytorch {a.mode}"
        if a.channels_last:
            label += ", channels-last"
        print(f"{label}: {a.steps} steps global batch {B * world} in {dt:.2f} s: {a.steps * B * world / dt:.0f} img/s, "
              f"final loss {loss.item():.4f}")
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
