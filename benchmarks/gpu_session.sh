#!/usr/bin/env bash
# The GPU rows of benchmarks/results.md, in one go on a lent GPU machine (whose python3 has torch):
#   bash benchmarks/gpu_session.sh [OUT]
# Writes the logs and the updated results.md under OUT (default: $OUT, else /tmp/gpu-bench). Each
# benchmark has its own time limit, so one that overruns costs only its own row.
set -u
out=${1:-${OUT:-/tmp/gpu-bench}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=5
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c "import torch, sklearn, skimage; print('torch', torch.__version__, 'sklearn', sklearn.__version__,
'skimage', skimage.__version__, 'cpus', __import__('os').cpu_count())" | tee -a "$out/gpu.txt"
run() {  # run <seconds> <log> <command...>
  local limit=$1 log=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$log" 2>&1
  echo "== $log: exit $? after $((SECONDS - t0)) s" | tee -a "$out/gpu.txt"
  tail -4 "$out/$log" | tr '\r' '\n' | tail -4
}
run 200 vtcd.log $py benchmarks/vtcd.py --device cuda --videos 30 --masks 4000 --batch-sizes 64 256 1024 \
  --throughput-masks 2048 --reference-masks 128 --append
run 110 vcc4.log $py benchmarks/vcc.py --model torchvision:resnet50 --device cuda --append
run 330 vcc_all.log $py benchmarks/vcc.py --model torchvision:resnet50 --all-blocks --images 10 --device cuda --append
cp benchmarks/results.md "$out/results.md"
