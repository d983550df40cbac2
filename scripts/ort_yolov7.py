#!/usr/bin/env python3
"""Time ONNX Runtime on the fused YOLOv7 that `yolov7 bench --export DIR` wrote, as the peer.

Runs DIR/model.onnx (our export of the fused network: the same graph and weights as our planned
form), checks it with the ONNX checker, checks ONNX Runtime's head outputs against ours
(DIR/head_*.npy), and prints the median time as JSON.

Needs: pip install numpy onnx onnxruntime

  ort_yolov7.py DIR [--threads 1] [--iters 10]
"""
import argparse, json, statistics, time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    d = Path(a.dir)
    model = onnx.load(d / "model.onnx")
    onnx.checker.check_model(model)
    x = np.load(d / "input.npy")
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(a.warmup):
        ys = sess.run(None, {"input": x})
    errors = []
    for i, y in enumerate(ys):
        ours = np.load(d / f"head_{i}.npy")
        errors.append(float(np.abs(y - ours).max() / max(1.0, np.abs(y).max())))
    times = []
    for _ in range(a.iters):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        times.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"median_ms": statistics.median(times), "threads": a.threads,
                      "max_relative_difference": max(errors), "ort": ort.__version__}))


if __name__ == "__main__":
    main()
