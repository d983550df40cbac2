#!/usr/bin/env python3
"""PyTorch's run of `cargo run --release --example digits`: the same data, split, model and
recipe (RepVGG blocks 1->16, 16->32 s2, 32->32, 32->64 s2, 64->64, global average pool,
Linear 64->10; SGD lr 0.05, momentum 0.9, weight decay 1e-4, cosine per step, batch 32),
printing the mean time per epoch and the test accuracy. Used by scripts/bench_training.sh.

  python3 scripts/digits_torch.py --threads 1 [--epochs 30] [--seed 0]
"""
import argparse
import gzip
import math
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step_torch import Block  # noqa: E402


def load(path):
    rows = [list(map(int, line.split(","))) for line in gzip.open(path, "rt") if line.strip()]
    images = torch.tensor([r[:64] for r in rows], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    labels = torch.tensor([r[64] for r in rows])
    test = torch.tensor([i % 5 == 4 for i in range(len(rows))])
    return (images[~test], labels[~test]), (images[test], labels[test])


def model():
    widths, strides = [(1, 16), (16, 32), (32, 32), (32, 64), (64, 64)], [1, 2, 1, 2, 1]
    blocks = [Block(cin, cout, s) for (cin, cout), s in zip(widths, strides)]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (x, y), (test_x, test_y) = load(os.path.join(root, "data", "digits.csv.gz"))
    net = model().train()
    sgd = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(y) / args.batch)
    total = args.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(sgd, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    seconds = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        for rows in torch.randperm(len(y)).split(args.batch):
            sgd.zero_grad()
            nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
            sgd.step()
            schedule.step()
        seconds.append(time.perf_counter() - started)
    net.eval()
    with torch.no_grad():
        accuracy = (net(test_x).argmax(1) == test_y).float().mean().item()
    print(
        f"PyTorch {torch.__version__}, {args.threads} thread(s): mean epoch {statistics.mean(seconds):.3f} s "
        f"over {args.epochs} epochs, test accuracy {100 * accuracy:.1f} %"
    )


if __name__ == "__main__":
    main()
