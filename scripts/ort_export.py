#!/usr/bin/env python3
"""Time ONNX Runtime on a network we exported, as the peer benchmark.

DIR holds what `repvgg bench --export DIR` or `yolov7 bench --export DIR` wrote (the input,
`input.npy`, and our planned outputs, `output_{i}.npy`) and `model.onnx`, which rep-onnx's
`onnx` example exported from the same fused weights. The script checks the model with the
ONNX checker, checks ONNX Runtime's outputs against ours (max |ort - ours| / max(1, max |ort|)),
and prints the median time as JSON.

With --memory it only loads the model (from the file) and runs it `iters` times, and prints
the process's peak resident memory before loading (after the imports) and at the end, in MB.

With --profile it runs `iters` times with ONNX Runtime's profiler on and prints, as JSON, each
node's median time in ms and its operator, keyed by node name (our exported node names, with
the suffix ONNX Runtime's layout transform adds, `_nchwc`, removed).

Needs: pip install numpy onnx onnxruntime

  ort_export.py DIR [--threads 1] [--iters 10] [--memory | --profile]
"""
import argparse, json, os, resource, statistics, tempfile, time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def session(path, threads, profile=False):
    so = ort.SessionOptions()
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--memory", action="store_true")
    p.add_argument("--profile", action="store_true")
    a = p.parse_args()
    d = Path(a.dir)
    x = np.load(d / "input.npy")
    if a.profile:
        sess = session(d / "model.onnx", a.threads, profile=True)
        for _ in range(a.warmup + a.iters):
            sess.run(None, {"input": x})
        trace = sess.end_profiling()
        runs = defaultdict(list)
        for event in json.load(open(trace)):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                name = event["name"][: -len("_kernel_time")].removesuffix("_nchwc")
                runs[(name, event["args"].get("op_name", "?"))].append(event["dur"] / 1e3)
        os.remove(trace)
        nodes = {name: {"op": op, "ms": statistics.median(t[a.warmup:] or t)} for (name, op), t in runs.items()}
        print(json.dumps(nodes))
        return
    if a.memory:
        before = peak_rss_mb()
        sess = session(d / "model.onnx", a.threads)
        for _ in range(a.iters):
            sess.run(None, {"input": x})
        print(json.dumps({"rss_before_mb": before, "rss_peak_mb": peak_rss_mb(), "ort": ort.__version__}))
        return
    import onnx
    onnx.checker.check_model(onnx.load(d / "model.onnx"))
    sess = session(d / "model.onnx", a.threads)
    for _ in range(a.warmup):
        ys = sess.run(None, {"input": x})
    errors = []
    for i, y in enumerate(ys):
        ours = np.load(d / f"output_{i}.npy")
        assert y.shape == ours.shape, f"output {i}: ORT {y.shape} vs ours {ours.shape}"
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
