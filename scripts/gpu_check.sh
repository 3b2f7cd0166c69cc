#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, install the CUDA build of the embedded engine (the xllamacpp
# wheel from xllamacpp's own CUDA index) into the venv, check that llama.cpp sees the GPU, then print the
# concurrency table (scripts/bench_concurrency.py) with the whole model offloaded (--n-gpu-layers -1) and
# 16 slots on both the engine process and assistd's embedded engine.
#
#   scripts/gpu_check.sh [bench_concurrency.py options, e.g. --rounds 5]
#   scripts/gpu_check.sh --restore      # back to the CPU wheel from PyPI (same version as before)
#
# Environment: VENV (default .venv), XLLAMACPP_CUDA (cu128 or cu132; default: chosen from the driver's
# CUDA version), XLLAMACPP_INDEX (a mirror of the wheel index, for machines without internet access).
# Needs: an NVIDIA driver for CUDA >= 12.8, glibc >= 2.35 (the prebuilt CUDA wheels' requirements).
# The CUDA 12.8 wheel ships native code for sm_86/89/120 and PTX for older and datacenter GPUs (A100,
# H100/H200 run it through a one-time JIT compile at first load).
#
# UNTESTED: written without access to a GPU machine; nothing in the test suite needs it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
STATE="$VENV/.xllamacpp-cpu-version"

if [[ "${1:-}" == "--restore" ]]; then
    version=$(cat "$STATE" 2>/dev/null || true)
    "$VENV/bin/pip" install --force-reinstall --no-deps "xllamacpp${version:+==$version}"
    exit 0
fi

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi missing or failing); nothing to do" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
driver_cuda=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | head -n1)
echo "driver supports CUDA $driver_cuda"

at_least() { # at_least A B: version A >= B
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}
if [[ -z "${XLLAMACPP_CUDA:-}" ]]; then
    if at_least "$driver_cuda" 13.2; then
        XLLAMACPP_CUDA=cu132
    elif at_least "$driver_cuda" 12.8; then
        XLLAMACPP_CUDA=cu128
    else
        echo "gpu_check: the driver supports CUDA $driver_cuda; the xllamacpp CUDA wheels need 12.8 or later" >&2
        exit 2
    fi
fi
INDEX=${XLLAMACPP_INDEX:-https://xorbitsai.github.io/xllamacpp/whl/$XLLAMACPP_CUDA}

# Remember the CPU wheel's version for --restore, then replace it with the CUDA build (the command of
# xllamacpp's README; --no-deps: the wheel has no dependencies, and the CUDA index holds only xllamacpp).
if [[ ! -f "$STATE" ]]; then
    "$PY" -c "import importlib.metadata as m; print(m.version('xllamacpp'))" >"$STATE"
fi
"$VENV/bin/pip" install xllamacpp --force-reinstall --no-deps --index-url "$INDEX"

"$PY" - <<'EOF'
import sys

import xllamacpp

devices = xllamacpp.get_device_info()
for d in devices:
    print(f"llama.cpp device: {d['name']} ({d['description']}), {d['memory_total'] / 2**30:.1f} GiB")
if not any(d["type"] == xllamacpp.ggml_backend_dev_type.GGML_BACKEND_DEVICE_TYPE_GPU for d in devices):
    sys.exit("gpu_check: the installed xllamacpp does not see a GPU (a CPU wheel, or a driver/runtime mismatch)")
EOF

exec "$PY" scripts/bench_concurrency.py --n-gpu-layers -1 --parallel 16 --embedded-parallel 16 "$@"
