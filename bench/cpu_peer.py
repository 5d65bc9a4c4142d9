#!/usr/bin/python3
"""DiffusionLab's CPU path against Debian's python3-torch on the same model (issue 17, item 6):
alternates `diffusionlab-cli bench --device cpu` and cpu_reference.py ROUNDS times in one run, with
the same threads, batches and iterations, and prints each round's medians and the ratios
(peer ms / DiffusionLab ms: above 1, DiffusionLab is faster).
  /usr/bin/python3 bench/cpu_peer.py [--cli build/app/diffusionlab-cli] [--model fashion-mnist-live] [--rounds 3]
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return out.stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cli", default=os.path.join(HERE, "..", "build", "app", "diffusionlab-cli"))
    p.add_argument("--model", default="fashion-mnist-live")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", default="1,64")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    path = a.model
    if not path.endswith(".safetensors"):
        path = os.path.join(HERE, "..", "resources", "models", a.model + ".safetensors")
    if not os.path.isfile(path):
        raise SystemExit(f"cpu_peer: no model file {path} (give a bundled model's file name, e.g. fashion-mnist-cosine)")
    batches = [int(b) for b in a.batches.split(",")]
    ours, peer = {b: [] for b in batches}, {b: {} for b in batches}
    for r in range(a.rounds):
        o = run([a.cli, "bench", "--model", path, "--device", "cpu", "--threads", str(a.threads), "--batches", a.batches,
                 "--iters", str(a.iters)])
        if r == 0:
            print(o.splitlines()[0])
        for line in o.splitlines():
            m = re.match(r"\s+(\d+)\s+([\d.]+)\s", line)
            if m and int(m.group(1)) in ours:
                ours[int(m.group(1))].append(float(m.group(2)))
        q = run([sys.executable, os.path.join(HERE, "cpu_reference.py"), "--model", path, "--threads", str(a.threads),
                 "--batches", a.batches, "--iters", str(a.iters)])
        if r == 0:
            print(q.splitlines()[0])
        for line in q.splitlines():
            m = re.match(r"\s+(\d+)\s+(\S+)\s+([\d.]+)\s", line)
            if m and int(m.group(1)) in peer:
                peer[int(m.group(1))].setdefault(m.group(2), []).append(float(m.group(3)))
        print(f"round {r + 1}: DiffusionLab " + ", ".join(f"B={b} {ours[b][-1]:.2f} ms" for b in batches) + " | peer " +
              ", ".join(f"B={b} " + " ".join(f"{v} {peer[b][v][-1]:.2f}" for v in peer[b]) for b in batches), flush=True)
    print(f"\nmedian ms per guided step (2B rows) over {a.rounds} alternated rounds; ratio = peer / DiffusionLab")
    print(f"{'batch':>6} {'DiffusionLab':>13} " + " ".join(f"{v:>14}" for v in peer[batches[0]]) +
          " " + " ".join(f"{'ratio ' + v:>20}" for v in peer[batches[0]]))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    for b in batches:
        d = med(ours[b])
        print(f"{b:>6} {d:>13.2f} " + " ".join(f"{med(peer[b][v]):>14.2f}" for v in peer[b]) + " " +
              " ".join(f"{med(peer[b][v]) / d:>20.2f}" for v in peer[b]))


if __name__ == "__main__":
    main()
