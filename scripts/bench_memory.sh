#!/usr/bin/env bash
# Peak resident memory of a planned forward against ONNX Runtime's, for the same fused network
# and input, each process loading the fused weights from a file and running the model.
#   rep: `repvgg infer` / `rep infer --family yolov7` (load the deploy safetensors, plan, run
#        once, write the output), its peak from /usr/bin/time; its baseline is the same binary
#        printing its help.
#   ORT: `ort_export.py DIR --memory` (the session created from our ONNX export, run once): its
#        peak from getrusage, its baseline the same process after importing numpy and onnxruntime.
# "above baseline" is what loading and running the model cost each process.
# Needs /usr/bin/time and `pip install numpy onnx onnxruntime`.
# Usage: scripts/bench_memory.sh [THREADS]   (prints a markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1}
cargo build --release --example repvgg --example yolov7 --example rep >&2
cargo build --release -p rep-onnx --example onnx >&2
export RAYON_NUM_THREADS=$threads
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
peak_kb() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
echo "| model | input | threads | rep peak | rep above baseline | ORT peak | ORT above baseline | rep / ORT (above baseline) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for config in "repvgg A0 224 1" "repvgg A0 224 8" "repvgg B0 224 1" "repvgg B3 224 1" "yolov7 1.0 640 1"; do
  read -r family arch res batch <<<"$config"
  rm -rf "${dir:?}"/*
  if [ "$family" = repvgg ]; then
    ./target/release/examples/repvgg bench --arch "$arch" --res "$res" --batch "$batch" --iters 1 --export "$dir" >/dev/null 2>&1
    run=(./target/release/examples/repvgg infer --weights "$dir/deploy.safetensors" --input "$dir/input.npy" --output "$dir/y.npy")
    base=(./target/release/examples/repvgg --help)
    name="RepVGG-$arch"
  else
    ./target/release/examples/yolov7 bench --width "$arch" --res "$res" --iters 1 --export "$dir" >/dev/null 2>&1
    run=(./target/release/examples/rep infer --family yolov7 --weights "$dir/deploy.safetensors" --input "$dir/input.npy" --output "$dir/y.npy")
    base=(./target/release/examples/rep --help)
    name="YOLOv7 w$arch"
  fi
  ./target/release/examples/onnx "$family" "$dir/deploy.safetensors" "$dir/model.onnx" "$res" "$batch" >/dev/null
  ours=$(peak_kb "${run[@]}")
  ours_base=$(peak_kb "${base[@]}")
  ort=$(python3 scripts/ort_export.py "$dir" --memory --threads "$threads" --iters 1 2>/dev/null | tail -1)
  python3 - "$ours" "$ours_base" "$ort" "$name" "$res" "$batch" "$threads" <<'PY'
import json, sys
ours, base = int(sys.argv[1]) / 1024, int(sys.argv[2]) / 1024
ort = json.loads(sys.argv[3])
name, res, batch, threads = sys.argv[4:8]
o, r = ours - base, ort["rss_peak_mb"] - ort["rss_before_mb"]
print(f"| {name} | {batch}×3×{res}² | {threads} | {ours:.0f} MB | {o:.0f} MB | {ort['rss_peak_mb']:.0f} MB | {r:.0f} MB | {o / r:.2f} |")
PY
done
