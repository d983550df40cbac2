#!/usr/bin/env bash
# Fused RepVGG: rep's planned form vs ONNX Runtime on the same network, back to back.
# Needs `pip install numpy onnx onnxruntime safetensors` and ../shared/bench beside the repo.
# Usage: scripts/bench_vs_ort.sh [ITERS] [KERNELS]   (prints a markdown table; KERNELS is
# `repvgg bench --kernels`: auto (default), direct, winograd or winograd4)
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-50}
kernels=${2:-auto}
peak_per_thread=286
cargo build --release --example repvgg >&2
echo "| model | batch | threads | rep planned | ONNX Runtime | rep / ORT | % of peak (rep) | rep layer by layer | rep train-time | planned vs train |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for config in "A0 1 1" "A0 1 2" "A0 8 1" "A0 8 2" "B0 1 1" "B0 1 2" "B0 8 2"; do
  read -r arch batch threads <<<"$config"
  lower=$(echo "$arch" | tr 'A-Z' 'a-z')
  ort=$(python3 ../shared/bench/ort_repvgg.py --arch "$lower" --batch "$batch" --threads "$threads" --iters "$iters" --json 2>/dev/null | tail -1)
  ours=$(./target/release/examples/repvgg bench --arch "$arch" --batch "$batch" --threads "$threads" --iters "$iters" --kernels "$kernels" --json 2>/dev/null)
  python3 - "$ort" "$ours" "$arch" "$batch" "$threads" <<'PY'
import json, sys
ort, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
arch, batch, threads = sys.argv[3:6]
o, r = ours["fused_ms"], ort["median_ms"]
print(f"| {arch} | {batch} | {threads} | {o:.2f} ms | {r:.2f} ms | {o / r:.2f} | {ours['peak_percent']:.0f} % | "
      f"{ours['fused_layers_ms']:.2f} ms | {ours['train_ms']:.2f} ms | {ours['speedup']:.2f}x |")
PY
done
