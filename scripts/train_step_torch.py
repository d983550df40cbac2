#!/usr/bin/env python3
"""PyTorch's time for the training step `cargo run --release --example train_step` measures:
RepVGG-A0 in its train-time form (3x3+BN, 1x1+BN, identity BN, ReLU), 224x224, batch 8,
forward + cross-entropy + backward + SGD (momentum 0.9, weight decay 1e-4), median of N steps
after warm-up, on the given number of threads. Run both back to back on one machine:

  pip install torch numpy
  python3 scripts/train_step_torch.py --threads 1 [--steps 10] [--batch 8] [--res 224]
  cargo run --release --example train_step -- --threads 1

(Written for this project's comparison; the block follows the RepVGG paper's description.)
"""
import argparse
import statistics
import time

import torch
from torch import nn


def conv_bn(cin, cout, kernel, stride, groups):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    )


class Block(nn.Module):
    """Train-time RepVGG block: sum of 3x3+BN, 1x1+BN and (same shape) a BN, then ReLU."""

    def __init__(self, cin, cout, stride, groups=1):
        super().__init__()
        self.dense = conv_bn(cin, cout, 3, stride, groups)
        self.pointwise = conv_bn(cin, cout, 1, stride, groups)
        self.identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x):
        y = self.dense(x) + self.pointwise(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return torch.relu(y)


def repvgg_a0(classes=1000):
    depths, widths = [2, 4, 14, 1], [48, 48, 96, 192, 1280]
    layers = [Block(3, widths[0], 2)]
    cin = widths[0]
    for stage, depth in enumerate(depths, start=1):
        for i in range(depth):
            layers.append(Block(cin, widths[stage], 2 if i == 0 else 1))
            cin = widths[stage]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--res", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = repvgg_a0().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, args.res, args.res)
    labels = torch.randint(0, 1000, (args.batch,))
    times = []
    for _ in range(args.steps + 2):
        started = time.perf_counter()
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    steps = times[2:]
    print(
        f"PyTorch {torch.__version__}: A0 at {args.res}x{args.res}, batch {args.batch}, {args.threads} thread(s): "
        f"median step {1e3 * statistics.median(steps):.1f} ms (min {1e3 * min(steps):.1f}, max {1e3 * max(steps):.1f}) "
        f"over {len(steps)} steps"
    )


if __name__ == "__main__":
    main()
