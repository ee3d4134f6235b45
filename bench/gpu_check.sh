#!/usr/bin/env bash
# One short device check for a lent GPU (the `device` tool's `run`): CUDA-only paths + GPU numbers.
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Writes everything under $OUT (or ./gpu-check-out); paste the table into bench/RESULTS.md with the card name.
set -uo pipefail
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q tests/test_cuda.py "tests/test_app.py" -k "cuda or gpu" 2>&1 | tee "$OUT/test_cuda.log"
timeout 240 python3 bench/train_step.py --json "$OUT/train_step.json" 2>&1 | tee "$OUT/train_step.log"
timeout 90 python3 bench/sample_cpu.py --device cuda --json "$OUT/sample_gpu.json" 2>&1 | tee "$OUT/sample_gpu.log"
