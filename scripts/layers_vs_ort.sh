#!/usr/bin/env bash
# Where fused YOLOv7 spends its time, layer by layer, against ONNX Runtime on the same graph:
# our planned steps (`yolov7 bench --steps`) joined by name with ONNX Runtime's profiler.
# Prints the time per kind of step (ours, and ORT's for the same layers) and the layers that
# lose the most. ORT's convolutions exclude the activation (it runs SiLU as its own node).
# Needs `pip install numpy onnx onnxruntime`.
# Usage: scripts/layers_vs_ort.sh [WIDTH] [RES] [THREADS] [ITERS] [TOP]
set -euo pipefail
cd "$(dirname "$0")/.."
width=${1:-1.0}
res=${2:-640}
threads=${3:-1}
iters=${4:-5}
top=${5:-15}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build --release --example yolov7 >&2
cargo build --release -p rep-onnx --example onnx >&2
./target/release/examples/yolov7 bench --width "$width" --res "$res" --threads "$threads" --iters "$iters" \
  --steps --export "$dir" 2>/dev/null | grep -E '^  model' > "$dir/steps.txt"
./target/release/examples/onnx yolov7 "$dir/deploy.safetensors" "$dir/model.onnx" "$res" >&2
python3 scripts/ort_export.py "$dir" --threads "$threads" --iters "$iters" --profile > "$dir/ort.json"
python3 - "$dir" "$top" <<'PY'
import json, sys
from collections import defaultdict
d, top = sys.argv[1], int(sys.argv[2])
ort = json.load(open(f"{d}/ort.json"))
steps = []
for line in open(f"{d}/steps.txt"):
    name, kind, ms = line.split()[:3]
    steps.append((name, kind, float(ms), ort.get(name, {}).get("ms")))
kinds = defaultdict(lambda: [0.0, 0.0, 0.0])
for name, kind, ms, theirs in steps:
    kinds[kind][0] += ms
    if theirs is not None:
        kinds[kind][1] += ms
        kinds[kind][2] += theirs
print("| kind | rep, all steps | rep, steps ORT names too | ORT, same layers | rep / ORT |")
print("| --- | --- | --- | --- | --- |")
for kind, (total, matched, theirs) in sorted(kinds.items(), key=lambda k: -k[1][0]):
    ratio = f"{matched / theirs:.2f}" if theirs else "-"
    print(f"| {kind} | {total:.1f} ms | {matched:.1f} ms | {theirs:.1f} ms | {ratio} |")
others = defaultdict(float)
for node in ort.values():
    if node["op"] != "Conv":
        others[node["op"]] += node["ms"]
print("\nORT's other nodes: " + ", ".join(f"{op} {ms:.1f} ms" for op, ms in sorted(others.items(), key=lambda o: -o[1])))
print(f"\n| layer | kind | rep | ORT | rep − ORT |\n| --- | --- | --- | --- | --- |")
matched = [s for s in steps if s[3] is not None]
for name, kind, ms, theirs in sorted(matched, key=lambda s: s[3] - s[2])[:top]:
    print(f"| {name} | {kind} | {ms:.2f} ms | {theirs:.2f} ms | {ms - theirs:+.2f} ms |")
PY
