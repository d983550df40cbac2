#!/usr/bin/env python3
"""How precise an f32 answer to the official RepVGG training-step fixture can be.

The fixture `tests/fixtures/official_a0_w25_sgd` is one step of the official RepVGG code (A0
layout, widths x0.25/x0.5, 10 classes, batch 4 of 3x32x32), computed by PyTorch on the CPU with
its oneDNN convolutions. This script recomputes the same step three ways and compares each, per
tensor, as `max |a - b| / max |b|`:

* PyTorch f32 with oneDNN (the fixture's own path), on 1 and 2 threads;
* PyTorch f32 with oneDNN disabled (its native im2col + GEMM convolutions);
* PyTorch f64, the reference against which every f32 answer is an approximation.

It also runs two `torch.optim.SGD` steps (lr 0.05, momentum 0.9, weight decay 1e-4) each way and
compares the parameters and running statistics with `after_sgd2.safetensors`, relative to
`max(1, max |theirs|)`. With `--ours FILE` (the gradients `cargo test --test training` writes,
path printed by the test) our gradients are compared the same way.

  pip install torch numpy safetensors
  cargo test --release --test training -- --nocapture   # prints where our gradients are
  python3 scripts/autograd_precision.py [--ours target/tmp/official_a0_w25_sgd-gradients.safetensors]

(Written for this project; the model follows the official code's layout and names.)
"""
import argparse
import pathlib

import numpy as np
import torch
from safetensors.numpy import load_file
from torch import nn

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/official_a0_w25_sgd"


def conv_bn(cin, cout, kernel, stride):
    branch = nn.Sequential()
    branch.add_module("conv", nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False))
    branch.add_module("bn", nn.BatchNorm2d(cout))
    return branch


class Block(nn.Module):
    """Train-time RepVGG block under the official names: rbr_dense, rbr_1x1, rbr_identity."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.rbr_dense = conv_bn(cin, cout, 3, stride)
        self.rbr_1x1 = conv_bn(cin, cout, 1, stride)
        self.rbr_identity = nn.BatchNorm2d(cout) if cin == cout and stride == 1 else None

    def forward(self, x):
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return torch.relu(y)


class Network(nn.Module):
    """The fixture's network: depths 2, 4, 14, 1; widths 16, 16, 32, 64, 256; 10 classes."""

    def __init__(self):
        super().__init__()
        self.stage0 = Block(3, 16, 2)
        cin = 16
        for stage, (depth, width) in enumerate(zip([2, 4, 14, 1], [16, 32, 64, 256]), start=1):
            blocks = []
            for i in range(depth):
                blocks.append(Block(cin, width, 2 if i == 0 else 1))
                cin = width
            setattr(self, f"stage{stage}", nn.Sequential(*blocks))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, 10)

    def forward(self, x):
        for stage in range(5):
            x = getattr(self, f"stage{stage}")(x)
        return self.linear(self.gap(x).flatten(1))


def network(dtype):
    model = Network().to(dtype)
    state = load_file(FIXTURE / "before.safetensors")
    model.load_state_dict({k: torch.from_numpy(v.copy()).to(dtype) if v.dtype.kind == "f" else torch.from_numpy(v.copy())
                           for k, v in state.items()})
    return model.train()


def batch(dtype):
    x = torch.from_numpy(np.load(FIXTURE / "input.npy")).to(dtype)
    return x, torch.from_numpy(np.load(FIXTURE / "labels.npy")).long()


def gradients(dtype, onednn=True, threads=1):
    torch.backends.mkldnn.enabled, _ = onednn, torch.set_num_threads(threads)
    model = network(dtype)
    x, labels = batch(dtype)
    nn.functional.cross_entropy(model(x), labels).backward()
    return {k: p.grad.double().numpy() for k, p in model.named_parameters()}


def two_sgd_steps(dtype, onednn=True, threads=1):
    torch.backends.mkldnn.enabled, _ = onednn, torch.set_num_threads(threads)
    model = network(dtype)
    x, labels = batch(dtype)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):
        sgd.zero_grad()
        nn.functional.cross_entropy(model(x), labels).backward()
        sgd.step()
    return {k: v.double().numpy() for k, v in model.state_dict().items() if v.is_floating_point()}


def report(what, ours, theirs, limit, floor=0.0):
    errors = sorted(((np.abs(ours[k] - t).max() / max(floor, np.abs(t).max()), k) for k, t in theirs.items()), reverse=True)
    beyond = sum(e > limit for e, _ in errors)
    print(f"{what:50s} worst {errors[0][0]:.3g} ({errors[0][1]}), {beyond} of {len(errors)} beyond {limit:g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", help="our gradients (safetensors), as the training test writes them")
    args = parser.parse_args()
    fixture = {k: v.astype(np.float64) for k, v in load_file(FIXTURE / "grads.safetensors").items()}
    exact = gradients(torch.float64)
    answers = {
        "PyTorch f32, oneDNN, 1 thread": gradients(torch.float32),
        "PyTorch f32, oneDNN, 2 threads": gradients(torch.float32, threads=2),
        "PyTorch f32, native convolutions": gradients(torch.float32, onednn=False),
    }
    if args.ours:
        answers["rep"] = {k: v.astype(np.float64) for k, v in load_file(args.ours).items()}
    print("gradients, per tensor, relative to the tensor's largest value:")
    for name, answer in answers.items():
        report(f"  {name} vs the fixture", answer, fixture, 1e-4)
        report(f"  {name} vs f64", answer, exact, 1e-4)
    print("after two SGD steps, relative to max(1, largest value):")
    after = {k: v.astype(np.float64) for k, v in load_file(FIXTURE / "after_sgd2.safetensors").items() if v.dtype.kind == "f"}
    report("  the fixture vs f64", after, two_sgd_steps(torch.float64), 1e-5, 1.0)
    report("  PyTorch f32, oneDNN vs the fixture", two_sgd_steps(torch.float32), after, 1e-5, 1.0)
    report("  PyTorch f32, native convolutions vs the fixture", two_sgd_steps(torch.float32, onednn=False), after, 1e-5, 1.0)


if __name__ == "__main__":
    main()
