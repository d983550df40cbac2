#!/usr/bin/env python3
"""Time ONNX Runtime on the fused YOLOv7 that `yolov7 bench --export DIR` wrote, as the peer.

Builds the ONNX graph from DIR/graph.json (our planned graph: convolutions with their weights'
keys, concatenations, pools, upsampling) and DIR/deploy.safetensors (our fused weights under
the official names), checks ONNX Runtime's head outputs against ours (DIR/head_*.npy), and
prints the median time as JSON.

Needs: pip install numpy onnx onnxruntime safetensors

  ort_yolov7.py DIR [--threads 1] [--iters 10]
"""
import argparse, json, statistics, time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file


def build(graph, weights, input_shape):
    nodes, inits = [], []
    for n in graph["nodes"]:
        op, out = n["op"], n["output"]
        if op == "conv":
            key = n["weights"]
            inits += [numpy_helper.from_array(weights[key + ".weight"], key + ".weight"),
                      numpy_helper.from_array(weights[key + ".bias"], key + ".bias")]
            k, s, p = n["kernel"], n["stride"], n["padding"]
            act = n["activation"]
            conv_out = out if act is None else out + ".pre"
            nodes.append(helper.make_node("Conv", [n["inputs"][0], key + ".weight", key + ".bias"], [conv_out],
                                          kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=n["groups"]))
            if act == "silu":
                nodes += [helper.make_node("Sigmoid", [conv_out], [out + ".sig"]),
                          helper.make_node("Mul", [conv_out, out + ".sig"], [out])]
            elif act is not None and act.startswith("leaky"):
                nodes.append(helper.make_node("LeakyRelu", [conv_out], [out], alpha=float(act.split()[1])))
        elif op == "concat":
            nodes.append(helper.make_node("Concat", n["inputs"], [out], axis=1))
        elif op == "add":
            nodes.append(helper.make_node("Sum", n["inputs"], [out]))
        elif op == "maxpool":
            k, s, p = n["kernel"], n["stride"], n["padding"]
            nodes.append(helper.make_node("MaxPool", n["inputs"], [out], kernel_shape=[k, k], strides=[s, s],
                                          pads=[p] * 4))
        elif op == "upsample":
            f = float(n["factor"])
            scales = numpy_helper.from_array(np.array([1, 1, f, f], np.float32), out + ".scales")
            inits.append(scales)
            nodes.append(helper.make_node("Resize", [n["inputs"][0], "", out + ".scales"], [out], mode="nearest",
                                          coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
        else:
            raise ValueError(op)
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", "C", "H", "W"]) for o in graph["outputs"]]
    g = helper.make_graph(nodes, "yolov7_deploy",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))], outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()
    d = Path(a.dir)
    graph = json.loads((d / "graph.json").read_text())
    weights = {k: v.astype(np.float32) for k, v in load_file(d / "deploy.safetensors").items()}
    x = np.load(d / "input.npy")
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(build(graph, weights, x.shape).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
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
