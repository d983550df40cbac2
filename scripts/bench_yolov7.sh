#!/usr/bin/env bash
# Fused YOLOv7: rep's planned form vs ONNX Runtime on the same graph and weights, back to back.
# ONNX Runtime runs our ONNX export (rep-onnx) of the same fused network.
# With ROUNDS > 1 the two then alternate ROUNDS − 1 more times (rep timing only its planned form),
# and the table adds the median and range of the per-round ratios: on a machine whose speed
# drifts from minute to minute, a ratio of neighbouring runs is steadier than one pair.
# Needs `pip install numpy onnx onnxruntime`.
# Usage: scripts/bench_yolov7.sh [WIDTH] [RES] [ITERS] [ROUNDS] [VARIANT]   (prints a markdown table)
# VARIANT is yolov7 (the default) or tiny.
set -euo pipefail
cd "$(dirname "$0")/.."
width=${1:-1.0}
res=${2:-640}
iters=${3:-10}
rounds=${4:-1}
variant=${5:-yolov7}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build --release --example yolov7 >&2
cargo build --release -p rep-onnx --example onnx >&2
bench=(./target/release/examples/yolov7 bench --variant "$variant" --width "$width" --res "$res" --iters "$iters" --json)
echo "| model | threads | rep planned | ONNX Runtime | rep / ORT | rep layer by layer | rep train-time | planned vs train | ORT vs rep outputs | rep / ORT over $rounds rounds: median (range) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for threads in 1 2; do
  # One JSON line per run: rep, ONNX Runtime, rep, ONNX Runtime, ...
  "${bench[@]}" --threads "$threads" --export "$dir" 2>/dev/null > "$dir/runs.jsonl"
  ./target/release/examples/onnx yolov7 "$dir/deploy.safetensors" "$dir/model.onnx" "$res" >&2
  ort=(python3 scripts/ort_export.py "$dir" --threads "$threads" --iters "$iters")
  "${ort[@]}" 2>/dev/null | tail -1 >> "$dir/runs.jsonl"
  for _ in $(seq 2 "$rounds"); do
    "${bench[@]}" --threads "$threads" --planned-only 2>/dev/null >> "$dir/runs.jsonl"
    "${ort[@]}" 2>/dev/null | tail -1 >> "$dir/runs.jsonl"
  done
  python3 - "$threads" "$dir/runs.jsonl" <<'PY'
import json, statistics, sys
threads, runs = sys.argv[1], [json.loads(line) for line in open(sys.argv[2])]
ours, ort = runs[0], runs[1]
o, r = ours["fused_ms"], ort["median_ms"]
ratios = [a["fused_ms"] / b["median_ms"] for a, b in zip(runs[::2], runs[1::2])]
print(f"| {ours['variant']} w{ours['width']} {ours['res']}² | {threads} | {o:.0f} ms | {r:.0f} ms | {o / r:.2f} | "
      f"{ours['fused_layers_ms']:.0f} ms | {ours['train_ms']:.0f} ms | {ours['speedup']:.2f}x | {ort['max_relative_difference']:.1e} | "
      f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
PY
done
