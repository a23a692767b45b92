#!/usr/bin/env bash
# Regenerate everything in data/demo/ from the seed: simulate the paper's genomics data (data/simulate.py),
# train the paper's CNN on it (data/train.py, about 1-2 minutes on 2 CPU cores), save the model as
# TorchScript, .pt2 and state_dict, and keep 300 held-out test sequences with their motif positions.
#
#   bash data/make_demo.sh [BIN]      BIN: the bin dir of a Python with torch and numpy (default .venv/bin)
#
# Environment: SEED (default 1), N (sequences simulated, default 60000), WORK (where the full simulated set
# goes, default build/demo_sim; build/ is not tracked).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${1:-$ROOT/.venv/bin}" && pwd)   # absolute, before the cd below
cd "$ROOT"
SEED=${SEED:-1}
N=${N:-60000}
WORK=${WORK:-build/demo_sim}

"$BIN/python" data/simulate.py --n "$N" --seed "$SEED" --out "$WORK"
"$BIN/python" data/train.py --sim "$WORK" --out data/demo --seed "$SEED" --threads 2 --n-demo 300
# a second "fold" for the workflow's fold averaging: the same data, another training seed; only its TorchScript
# file and metrics are kept
"$BIN/python" data/train.py --sim "$WORK" --out "$WORK/fold2" --seed $((SEED + 1)) --threads 2 --n-demo 300
mkdir -p data/demo/fold2
cp "$WORK/fold2/model.pt" "$WORK/fold2/metrics.json" data/demo/fold2/
du -ch data/demo/* | tail -n 1
echo "demo data and model written to data/demo/ (full simulated set: $WORK/)"
