#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU: installs the gpu extra, prints the device, runs the gpu
# tests, times the GPU path against PyTorch CUDA and writes bench/results/gpu.md; under 10 minutes
# (step limits 120 + 240 + 180 s).
#   bash bench/gpu_check.sh              (WHEELS=dir: install CuPy offline from wheels in dir)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import cupy" 2>/dev/null; then
    echo "== installing the gpu extra (cupy-cuda12x)"
    if [ -n "${WHEELS:-}" ]; then
        timeout 120 "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" cupy-cuda12x
    else
        timeout 120 "$PYTHON" -m pip install -q cupy-cuda12x
    fi || { echo "gpu_check: could not install cupy-cuda12x" >&2; exit 1; }
fi
"$PYTHON" -c "import pytest, numpy" || { echo "gpu_check: needs pytest and numpy ($PYTHON -m pip install -e '.[test]')" >&2; exit 1; }

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"$PYTHON" -c "
import cupy
props = cupy.cuda.runtime.getDeviceProperties(0)
print('CuPy', cupy.__version__, '| CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), '|', props['name'].decode())
" || { echo "gpu_check: CuPy sees no CUDA device" >&2; exit 1; }

echo "== gpu tests (marker gpu: the device suite on CuPy, and the older GPU cases)"
timeout 240 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee /tmp/compactnet_gpu_tests.log
tests_status=${PIPESTATUS[0]}
summary=$(grep -E "passed|failed|error" /tmp/compactnet_gpu_tests.log | tail -1)

echo "== timings on the GPU"
timeout 180 "$PYTHON" bench/gpu_speed.py --repeats 7 --out bench/results/gpu.md --tests "${summary:-no summary (exit $tests_status)}"
bench_status=$?
echo "== wrote bench/results/gpu.md (tests exit $tests_status, timings exit $bench_status)"
exit $(( tests_status != 0 || bench_status != 0 ))
