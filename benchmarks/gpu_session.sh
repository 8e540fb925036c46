#!/usr/bin/env bash
# The GPU rows of benchmarks/results.md, in one go on a lent GPU machine (whose python3 has torch):
#   bash benchmarks/gpu_session.sh [OUT] [PART]
# Writes the logs and the updated results.md under OUT (default: $OUT, else /tmp/gpu-bench). Each
# benchmark has its own time limit, so one that overruns costs only its own row. PART (default
# `base`: the VTCD and VCC rows below) or one of the real-scale rows of issue 13, each sized for a
# session of its own: `scale-videomae` (VideoMAE-B, 30 clips, 12 x 12 heads, 4000 masks: about 6 min at
# most), `scale-resnet50` (16 blocks, 50 images) and `scale-vgg16` (13 conv layers, 50 images), 9 min
# at most each.
set -u
out=${1:-${OUT:-/tmp/gpu-bench}}
part=${2:-base}
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
case $part in
base)
run 200 vtcd.log $py benchmarks/vtcd.py --device cuda --videos 30 --masks 4000 --batch-sizes 64 256 1024 \
  --throughput-masks 2048 --reference-masks 128 --append
run 110 vcc4.log $py benchmarks/vcc.py --model torchvision:resnet50 --device cuda --append
run 330 vcc_all.log $py benchmarks/vcc.py --model torchvision:resnet50 --all-blocks --images 10 --device cuda --append
;;
scale-videomae)
run 360 scale_videomae.log $py benchmarks/scale_models.py --models videomae --device cuda --precision bf16 \
  --slic-backend torch --append
;;
scale-resnet50|scale-vgg16)
run 540 "$part.log" $py benchmarks/scale_models.py --models "${part#scale-}" --device cuda --precision bf16 \
  --concept-kmeans auto --jobs 16 --append
;;
*) echo "unknown part $part (base, scale-videomae, scale-resnet50, scale-vgg16)"; exit 2 ;;
esac
cp benchmarks/results.md "$out/results.md"
