#!/usr/bin/env python3
"""PyTorch's time for what `cargo run --release --example orepa -- bench` measures: one OREPA
block trained online (the branch weights squeezed into one kernel every step, one convolution,
then BN), forward + backward, batch 8, stride 1, on the given number of threads.

  pip install torch
  python3 scripts/orepa_torch.py --threads 1 [--channels 64] [--size 56] [--steps 20]

The block follows the OREPA paper's six linear branches (k×k; 1×1 → avg-pool; 1×1 → DCT
frequency prior; 1×1 → k×k; 1×1; depthwise k×k ×8 → 1×1), each scaled per output channel,
squeezed as this project's fusion algebra squeezes them (written for this comparison).
"""
import argparse
import math
import statistics
import time

import torch
from torch import nn


def dct_prior(channels, k):
    """One 2-D DCT basis function per output channel (frequencies cycling over k×k)."""
    basis = torch.zeros(channels, k, k)
    for c in range(channels):
        u, v = (c // k) % k, c % k
        for h in range(k):
            for w in range(k):
                basis[c, h, w] = math.cos(math.pi * (h + 0.5) * u / k) * math.cos(math.pi * (w + 0.5) * v / k)
    return basis


class OrepaOnline(nn.Module):
    def __init__(self, cin, cout, k=3):
        super().__init__()
        self.k, self.pad = k, k // 2
        p = lambda *shape: nn.Parameter(torch.randn(*shape) * 0.1)  # noqa: E731
        self.origin, self.avg, self.prior = p(cout, cin, k, k), p(cout, cin, 1, 1), p(cout, cin, 1, 1)
        self.idconv1, self.conv2 = p(cin, cin, 1, 1), p(cout, cin, k, k)
        self.pointwise = p(cout, cin, 1, 1)
        self.dw, self.pw = p(cin * 8, 1, k, k), p(cout, cin * 8, 1, 1)
        self.vector = nn.Parameter(torch.ones(6, cout))
        self.register_buffer("avg_kernel", torch.full((k, k), 1.0 / (k * k)))
        self.register_buffer("dct", dct_prior(cout, k))
        self.register_buffer("identity", torch.eye(cin).reshape(cin, cin, 1, 1))
        self.bn = nn.BatchNorm2d(cout)

    def weight(self):
        k, v = self.k, self.vector
        w = self.origin * v[0].view(-1, 1, 1, 1)
        w = w + (self.avg * self.avg_kernel) * v[1].view(-1, 1, 1, 1)
        w = w + (self.prior * self.dct.unsqueeze(1)) * v[2].view(-1, 1, 1, 1)
        first = (self.idconv1 + self.identity).squeeze(-1).squeeze(-1)  # [T, cin]
        w = w + torch.einsum("othw,ti->oihw", self.conv2, first) * v[3].view(-1, 1, 1, 1)
        w = w + nn.functional.pad(self.pointwise, [k // 2] * 4) * v[4].view(-1, 1, 1, 1)
        cin = self.dw.shape[0] // 8
        dw = self.dw.view(cin, 8, k, k)
        pw = self.pw.view(-1, cin, 8)
        w = w + torch.einsum("oim,imhw->oihw", pw, dw) * v[5].view(-1, 1, 1, 1)
        return w

    def forward(self, x):
        return self.bn(nn.functional.conv2d(x, self.weight(), padding=self.pad))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    block = OrepaOnline(args.channels, args.channels).train()
    x = torch.randn(8, args.channels, args.size, args.size)
    dy = torch.randn(8, args.channels, args.size, args.size)
    times = []
    for _ in range(args.steps + 2):
        started = time.perf_counter()
        block.zero_grad()
        block(x).backward(dy)
        times.append(time.perf_counter() - started)
    steps = times[2:]
    print(
        f"PyTorch {torch.__version__}: OREPA online {args.channels}->{args.channels} {args.size}x{args.size}, batch 8, "
        f"{args.threads} thread(s): median {1e3 * statistics.median(steps):.1f} ms (forward + backward)"
    )


if __name__ == "__main__":
    main()
