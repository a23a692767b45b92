#!/usr/bin/env bash
# The README's demo (`make demo` runs `bash data/run_demo.sh .venv/bin`): score the 300 bundled test
# sequences with the bundled model of the DeepLIFT paper's genomics example, draw a logo of the first one
# (a positive, carrying a GATA site and a TAL1 E-box; data/demo/test_motifs.tsv says where), and summarise
# the scores file.
#
#   bash data/run_demo.sh BIN         BIN: the bin dir of the venv where dnalift is installed
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: bash data/run_demo.sh BIN   (BIN: the venv's bin dir, e.g. .venv/bin)" >&2
    exit 2
fi
BIN=$1
if [ -d "$BIN" ]; then BIN=$(cd "$BIN" && pwd); fi   # absolute, before the cd below
cd "$(dirname "$0")/.."
if [ ! -x "$BIN/dnalift" ]; then
    echo "no dnalift command in $BIN; install it first (make install, or $BIN/pip install -e .)" >&2
    exit 1
fi
OUT=results/demo
mkdir -p "$OUT"

"$BIN/dnalift" score data/demo/model.pt data/demo/test.fa -o "$OUT/scores.h5" --force
"$BIN/dnalift" logo "$OUT/scores.h5" --index 0 --start 40 --end 110 -o "$OUT/logo.png" --force
"$BIN/dnalift" inspect "$OUT/scores.h5"

echo
echo "Outputs:"
echo "  $OUT/scores.h5   DeepLIFT scores of the 300 sequences of data/demo/test.fa"
echo "  $OUT/logo.png    logo of sequence 0, bases 40-110: a GATA site (52-62, minus strand) and a TAL1 E-box (87-97)"
