#!/usr/bin/env bash
# Everything a first GPU run must measure, in one 10-minute device call: each step has its own time limit,
# cut to what is left of BUDGET seconds (default 560), so one stall cannot eat the others and the
# script always ends (with every finished step's JSON) before a 600 s call limit. JSON per step under $OUT (default
# out/gpu); a summary on stdout. Nothing needs the network or a weights download: full-size random
# weights are made in memory on the device.
#
#   bash bench/gpu.sh            # from the repository root, e.g. run(command="bash bench/gpu.sh")
#
# Parity fixtures: tests/engine/parity reads STCHAIN_FIXTURES_DIR, default: the reference fixtures in the data folder beside the repository;
# on the device machine copy them into the checkout first (the run tool carries shared/):
#   mkdir -p shared/fixtures && cp -r /work/shared/fixtures/reference shared/fixtures/   (15 MB)
set -u
PY=${PY:-python3}
OUT=${OUT:-out/gpu}
BUDGET=${BUDGET:-560}
mkdir -p "$OUT"
export PYTHONPATH=$PWD OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
[ -d shared/fixtures/reference ] && export STCHAIN_FIXTURES_DIR=${STCHAIN_FIXTURES_DIR:-$PWD/shared/fixtures/reference}

step() {  # step NAME SECONDS COMMAND...: JSON to $OUT/NAME.json, log to $OUT/NAME.err
    local name=$1 limit=$2 t0=$SECONDS left=$((BUDGET - SECONDS))
    shift 2
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then echo "== $name: skipped, budget spent"; return; fi
    timeout "$limit" "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
    echo "== $name: exit $? in $((SECONDS - t0)) s"
    tail -c 2500 "$OUT/$name.json"
    echo
}

$PY - <<'PYEOF' || exit 1
import torch, PIL
assert torch.cuda.is_available(), "no CUDA device"
print("torch", torch.__version__, "|", torch.cuda.get_device_name(0), "|",
      round(torch.cuda.get_device_properties(0).total_memory / 2**30), "GiB | flash SDPA",
      torch.backends.cuda.flash_sdp_enabled(), "| cuDNN SDPA", torch.backends.cuda.cudnn_sdp_enabled())
PYEOF

BENCH="bench/pipeline.py --size full --in-memory --device cuda --no-warmup"
step flops 120 $PY bench/flops.py --frames 16
step flops_fast 60 $PY bench/flops.py --frames 16 --preset fast
step bf16_parity 90 $PY bench/bf16_parity.py --device cuda
step footage 60 $PY bench/synthetic_footage.py "$OUT/footage" --frames 256
# warm-up (kernels, allocator), then the 16-frame timings of both methods and the 256-frame chain
step warmup 90 $PY $BENCH --frames 4 --methods chain --footage "$OUT/footage"
step frames16 200 $PY $BENCH --frames 16 --footage "$OUT/footage"
step frames256_chain 150 $PY $BENCH --frames 256 --methods chain --footage "$OUT/footage"
# a real CUDA out-of-memory: 12 GB cap and 16x the decoder chunk; expect one retry warning, then a result
step oom_retry 90 $PY $BENCH --frames 16 --methods chain --footage "$OUT/footage" --memory-cap-gb 12 \
    --set decode_chunk=4194304
