#!/usr/bin/env bash
# The GPU checks, in one short run on a machine with one CUDA GPU (CI has none).
#
#   bash examples/benchmarks/gpu_checks.sh OUT_DIR
#
# 1. the CUDA tests: AMP training steps of both trainers, CUDA-vs-CPU forward parity, head
#    offloading and the FCOS head on the device (tests/test_cuda.py and the `cuda` tests);
# 2. multitask_memory.py on CUDA at the published size (Swin V2 tiny, 224 px, batch 8):
#    peak torch.cuda.max_memory_allocated for 1..17 tasks, medfound vs the naive loop;
# 3. dac_cost.py on CUDA: the test-size network in fp32 and the published one (ResNet-50,
#    width 64, 256 px, batch 8) with AMP: DAC/CPS iteration and deployed-inference ratios;
# 4. multitask_throughput.py on CUDA: medfound's trainer vs MONAI's SupervisedTrainer.
# Each step has its own time limit, so one hang does not hide the others' numbers; the JSON
# files and one log (gpu_checks.log) land in OUT_DIR. Exit status: that of the tests.
set -u
out="${1:?usage: gpu_checks.sh OUT_DIR}"
mkdir -p "$out"
log="$out/gpu_checks.log"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
nvidia-smi -L 2>&1 | tee "$log"
"$py" -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'monai', monai.__version__, torch.cuda.get_device_name(0))" 2>&1 | tee -a "$log"

timeout 240 "$py" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py tests/test_fcos_head.py \
    tests/test_multitask_trainer.py tests/test_multitask_offload.py -k "cuda or offload" 2>&1 | tee -a "$log"
tests_rc=${PIPESTATUS[0]}

timeout 300 "$py" examples/benchmarks/multitask_memory.py --device cuda --network tiny --image-size 224 \
    --batch-size 8 --json "$out/multitask_memory_cuda.json" 2>&1 | tee -a "$log"
timeout 60 "$py" examples/benchmarks/dac_cost.py --device cuda --rounds 20 --json "$out/dac_cost_cuda_small.json" \
    2>&1 | tee -a "$log"
timeout 90 "$py" examples/benchmarks/dac_cost.py --device cuda --amp --backbone resnet50 --width 64 --size 256 \
    --batch 8 --rounds 20 --json "$out/dac_cost_cuda_published_amp.json" 2>&1 | tee -a "$log"
timeout 60 "$py" examples/benchmarks/multitask_throughput.py --device cuda --network tiny --image-size 224 \
    --kind segmentation --json "$out/multitask_throughput_cuda.json" 2>&1 | tee -a "$log"
exit "$tests_rc"
