#!/usr/bin/env bash
# Issue 12's GPU figures in one run (BENCHMARKS.md section 7): the CUDA tests, then the
# throughput rows, most important first, all appended to OUTDIR/gpu-issue12.jsonl, the
# counted steps' profiler tables to OUTDIR/profile.txt, the whole log to OUTDIR/log.txt.
#
#   bash benchmarks/gpu_issue12.sh OUTDIR
#
# SCALE (default 1, the paper's node sets) and DEVICE (default cuda) let the script be tried
# on a CPU first (the CUDA-graph rows then stop at once: they need a GPU):
# SCALE=0.02 DEVICE=cpu bash benchmarks/gpu_issue12.sh /tmp/try. ALL=1 adds the full graph's and the DGL sampler's rows.
set -uo pipefail
out=${1:?usage: gpu_issue12.sh OUTDIR}
scale=${SCALE:-1}
device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
exec > >(tee -a "$out/log.txt") 2>&1

stamp() { echo "== $(date +%T) $*"; }
bench() {
    stamp "throughput $*"
    python benchmarks/throughput.py --device "$device" --scale "$scale" --out "$out/gpu-issue12.jsonl" "$@" \
        | grep -v '^  batch '
}

stamp "machine"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null
python -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

stamp "data (x$scale)"
dir=${GENEN_DGL_BENCH_DIR:-/tmp/bench-data}/scale$scale
[ -f "$dir/dataset.yaml" ] || python -m genen_dgl.data.sample --out "$dir" --scale "$scale" --build | tail -3

stamp "CUDA tests"
python -m pytest -q -p no:cacheprovider tests/test_sync_free.py tests/test_device_sampling.py tests/test_cuda_graph.py \
    tests/test_precision.py "tests/test_layers.py::test_layers_on_cuda_match_the_cpu"

table=(--count-ops --profile-table "$out/profile.txt")
# each whole step replayed as one CUDA graph (captured in the last of 4 warm-up batches)
graphed=(--sampler device --batch-size 1024 --cuda-graph --warmup 4 --max-batches 50)
bench --model gcn "${graphed[@]}" --precision bf16 "${table[@]}"
bench --model gat "${graphed[@]}" --precision bf16 "${table[@]}"
bench --model gcn "${graphed[@]}" --precision fp32
bench --model gcn "${graphed[@]}" --precision tf32
bench --model gat "${graphed[@]}" --precision fp32
# eager steps, stage by stage (dgl.nn has no CUDA in the PyPI build: no baseline)
bench --model gcn --sampler device --batch-size 1024 --max-batches 30 --precision bf16 --pipeline --no-baseline "${table[@]}"
bench --model gat --sampler device --batch-size 1024 --max-batches 30 --precision bf16 --no-baseline "${table[@]}"
if [ -n "${ALL:-}" ]; then  # the full graph, and the DGL sampler's rows
    bench --model gcn --sampler full --precision bf16 --warmup 3 --max-batches 20 "${table[@]}"
    bench --model gcn --sampler full --precision fp32 --warmup 3 --max-batches 20
    bench --model gcn --sampler neighbor --batch-size 1024 --max-batches 20 --count-ops
    bench --sampling-only --batch-size 1024 --max-batches 50
fi
stamp "done"
