#!/usr/bin/env bash
# Training speed, rep vs PyTorch eager, back to back on this machine (a benchmark, never a test).
# Needs `pip install torch` (PYTHON=/path/to/python to pick an environment that has it).
# Usage: scripts/bench_training.sh [EPOCHS]   (prints a markdown table)
#   A0 step: RepVGG-A0 train-time form, 224x224, batch 8, forward + cross-entropy + backward + SGD
#            (examples/train_step.rs vs scripts/train_step_torch.py), median of 10 steps;
#   digits:  the digits recipe (examples/digits.rs vs scripts/digits_torch.py), mean epoch time
#            over EPOCHS epochs (default 30) and test accuracy;
#   OREPA:   one block trained online, forward + backward, batch 8 (examples/orepa.rs bench vs
#            scripts/orepa_torch.py, this project's PyTorch rendering of the paper's block).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
epochs=${1:-30}
cargo build --release --example train_step --example digits --example orepa >&2
echo "| benchmark | threads | rep | PyTorch | rep / PyTorch |"
echo "| --- | --- | --- | --- | --- |"
for threads in 1 2; do
  ours=$(./target/release/examples/train_step --threads "$threads" | sed -n 's/.*median step \([0-9.]*\) ms.*/\1/p')
  theirs=$("$python" scripts/train_step_torch.py --threads "$threads" 2>/dev/null | sed -n 's/.*median step \([0-9.]*\) ms.*/\1/p')
  echo "| A0 step, batch 8 | $threads | $ours ms | $theirs ms | $(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }') |"
done
for threads in 1 2; do
  log=$(./target/release/examples/digits --threads "$threads" --epochs "$epochs")
  ours=$(echo "$log" | sed -n 's/^epoch .*, \([0-9.]*\) s (.*/\1/p' | awk '{ s += $1 } END { printf "%.3f", s / NR }')
  ours_accuracy=$(echo "$log" | sed -n 's/^test accuracy (fused, planned): *\([0-9.]*\) %.*/\1/p')
  torch_log=$("$python" scripts/digits_torch.py --threads "$threads" --epochs "$epochs" 2>/dev/null)
  theirs=$(echo "$torch_log" | sed -n 's/.*mean epoch \([0-9.]*\) s.*/\1/p')
  theirs_accuracy=$(echo "$torch_log" | sed -n 's/.*test accuracy \([0-9.]*\) %.*/\1/p')
  echo "| digits epoch ($ours_accuracy % / $theirs_accuracy % test) | $threads | $ours s | $theirs s | $(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }') |"
done
orepa=$(RAYON_NUM_THREADS=1 ./target/release/examples/orepa bench)
for config in "64 56" "64 14" "256 14"; do
  read -r channels size <<<"$config"
  ours=$(echo "$orepa" | awk -v c="$channels->$channels" -v s="${size}x${size}" '$1 == c && $2 == s { print $3 }')
  theirs=$("$python" scripts/orepa_torch.py --threads 1 --channels "$channels" --size "$size" 2>/dev/null | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
  echo "| OREPA online $channels->$channels ${size}x${size} | 1 | $ours ms | $theirs ms | $(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }') |"
done
