#!/usr/bin/env bash
# The GPU check of issues 10 and 23 (under 10 minutes): CUDA scores equal CPU scores, `dnalift score --device cuda` on
# the demo data, throughput with peak GPU memory, and a ChromBPNet-sized model's pairs/s, FLOP/s against the card's
# peak and projected genome-wide time per precision. See benchmarks/gpu_check.py for the parts.
#
#   bash benchmarks/gpu_check.sh                      # on a machine with torch + CUDA, from a fresh checkout
#   bash benchmarks/gpu_check.sh --device cpu --tiny  # exercise the script here, without a GPU
#
# It installs nothing from the internet and needs no venv: dnalift is imported from this checkout
# (PYTHONPATH). It needs torch, numpy, h5py and click; part (b) also pyfaidx. Wheels of missing pure-Python
# packages found in .whl/ (e.g. pyfaidx, carried there) are installed offline into a temporary folder first.
# The python is $PYTHON, else python3 when it imports torch, else .venv/bin/python. The summary table is
# printed and, when OUT is set, written to $OUT/gpu_check.txt. Exit status 0 when every check passed.
set -u
cd "$(dirname "$0")/.." || exit 2
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if ! python3 -c "import torch" 2>/dev/null && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    site=$(mktemp -d)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl \
        && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
limit=${GPU_CHECK_SECONDS:-570}
if command -v timeout >/dev/null; then
    exec timeout -k 10 "$limit" "$PYTHON" benchmarks/gpu_check.py "$@"
fi
exec "$PYTHON" benchmarks/gpu_check.py "$@"
