"""Writes the YOLOv7 fixtures of tests/fixtures/yolov7_calibrated_* with the official code.

Run from a checkout of the official repository (github.com/WongKinYiu/yolov7), with PyTorch,
torchvision, safetensors and the repository's requirements installed:

    cd yolov7 && python /path/to/rep/scripts/yolov7_fixture.py /path/to/rep/tests/fixtures

Each network is the official layout at width 0.125 with 2 classes and random weights. Its
BatchNorm running statistics are first calibrated on the input (one training-mode pass with
momentum 1), on four other random images, floored at 0.05, then perturbed by a few per cent, so that every layer's output stays of order one
in eval mode: a mistake anywhere in the graph (a swapped concatenation source, a wrong pool)
changes the outputs far beyond the 1e-5 tolerance. (With uncalibrated random statistics the
signal of the early layers fades out before the head.)
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

sys.path.insert(0, ".")
from models.yolo import Model  # noqa: E402


def build(cfg_path, width, classes, seed):
    cfg = yaml.safe_load(open(cfg_path))
    cfg["width_multiple"], cfg["nc"] = width, classes
    torch.manual_seed(seed)
    model = Model(cfg, ch=3, nc=classes).float()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, 0.0, 0.2)
    for name, p in model.named_parameters():
        if name.endswith("implicit"):
            with torch.no_grad():
                p.copy_(torch.empty_like(p).uniform_(0.5, 1.5) if ".im." in name else torch.randn_like(p) * 0.2)
    return model


def calibrate(model, x):
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    for bn in bns:
        bn.momentum = 0.03
        # A floor keeps the fold well conditioned (a near-constant channel would make 1/σ huge).
        bn.running_var.clamp_(min=0.05)
        bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.9, 1.1))
        bn.running_mean.add_(torch.randn_like(bn.running_mean) * 0.05 * bn.running_var.sqrt())
    model.eval()


def main(out_root):
    for cfg_path, name, shape, seed in [
        ("cfg/training/yolov7.yaml", "yolov7_calibrated_w125_nc2_96x128", (1, 3, 96, 128), 7100),
        ("cfg/training/yolov7-tiny.yaml", "yolov7_tiny_calibrated_w125_nc2_96x128", (1, 3, 96, 128), 7200),
    ]:
        out = Path(out_root) / name
        out.mkdir(parents=True, exist_ok=True)
        model = build(cfg_path, 0.125, 2, seed)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))
        calibrate(model, torch.randn((4,) + shape[1:], generator=torch.Generator().manual_seed(seed + 2)))
        with torch.no_grad():
            z, maps = model(x)
        np.save(out / "input.npy", x.numpy())
        np.save(out / "expect_train.npy", z.numpy())
        for level, m in enumerate(maps):
            np.save(out / f"expect_train_p{level + 3}.npy", m.numpy())
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "train.safetensors")
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            model.fuse()
            z_fused, _ = model(x)
        np.save(out / "expect_deploy.npy", z_fused.numpy())
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "deploy.safetensors")
        meta = {
            "repo": "github.com/WongKinYiu/yolov7",
            "cfg": cfg_path,
            "width_multiple": 0.125,
            "nc": 2,
            "seed": seed,
            "input_shape": list(shape),
            "params": params,
            "train_vs_deploy_max_abs": float((z - z_fused).abs().max()),
            "max_abs_expect": float(z.abs().max()),
            "torch": torch.__version__,
        }
        json.dump(meta, open(out / "meta.json", "w"), indent=1)
        print(name, meta)


if __name__ == "__main__":
    main(sys.argv[1])
