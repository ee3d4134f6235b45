#!/usr/bin/env bash
# The one prepared GPU script (the `device` tool's `run`), for a task that is lent a GPU:
#   1. the CUDA-only checks and benchmarks (bench/gpu_check.sh: graph, bf16, channels_last),
#   2. the chosen recipe trained on the 37,290 faces for EPOCHS epochs on the GPU,
#   3. the model, its grid, the log and the numbers brought back under $OUT.
# Prepare here first (CelebA never leaves ../shared except as this git-ignored pack):
#   python bench/pack_data.py ../shared/data/celeba64/train .gpu-data/train.zip --quality 80
#   run(command="bash bench/gpu_train.sh", carry=[".gpu-data"], timeout_s=600)
# Then evaluate here on the CPU with the standard protocol (the Inception weights do not travel):
#   python -m dcgan_hf evaluate --model <folder from $OUT> --real ../shared/data/celeba64/val --num 5000
# Every step is bounded by `timeout`; train.py checkpoints and writes its Hub folder on SIGTERM,
# so a slow GPU still brings back the model it reached.
set -uo pipefail
OUT=${OUT:-gpu-train-out}
DATA=${DATA:-.gpu-data/train.zip}
EPOCHS=${EPOCHS:-100}
TRAIN_SECONDS=${TRAIN_SECONDS:-330}
RECIPE=${RECIPE:-}  # extra train.py flags; the defaults are the study's winner (bench/RESULTS.md §10)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
timeout 120 python3 -m pytest -q -x tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
timeout 60 python3 bench/train_step.py --json "$OUT/train_step.json" 2>&1 | tail -n 20 | tee -a "$OUT/gpu.txt"
run=/tmp/gpu-run
# shellcheck disable=SC2086
timeout -s TERM "$TRAIN_SECONDS" python3 train.py --data "$DATA" --output-dir "$run" --epochs "$EPOCHS" \
    --batch-size 128 --no-progress --log-every 1000 --checkpoint-every 25 --hub-every 1000 $RECIPE \
    2>&1 | tee "$OUT/train.log" | grep -E "captured|training |epoch [0-9]+ |checkpoint|img/s" | tail -n 40
tar -C "$run/hub" -cf "$OUT/model.tar" config.json model.safetensors README.md samples.png loss.png \
    discriminator/config.json discriminator/model.safetensors 2>&1
ls -la "$OUT"
