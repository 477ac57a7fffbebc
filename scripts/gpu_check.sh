#!/usr/bin/env bash
# The one script to run on a machine with a CUDA GPU: the `cuda` tests, then every scripts/bench_*.py with
# --device cuda, each step under a timeout and all of them under one budget (a failed step is recorded and the
# next one runs). Exits 0 with one line where there is no CUDA GPU; non-zero if any step failed. No network.
#
#   scripts/gpu_check.sh                            # or: make gpu-check
#   XATTR_GPU_CHECK_FORCE=1 scripts/gpu_check.sh    # the same pipeline on the CPU at --quick sizes (a dry run)
#
# Writes four files to ${OUT:-gpu_check_out}/ (few, because a lent machine returns at most 8 from $OUT), the
# first two rewritten after every step so that a run cut short still leaves them:
#   summary.md   the steps (status, seconds) and the ratios the benchmarks printed
#   steps.log    every finished step's output, one after the other
#   env.txt      GPU, driver, versions, where each package comes from, missing modules
#   logs.tar.gz  one log per step (<step>.log) and env.txt, at the end
# Environment: OUT; XATTR_PYTHON (default .venv/bin/python if present, else python3); XATTR_GPU_CHECK_BUDGET_S
# (seconds for all steps; default 540 on a GPU, 2400 forced); XATTR_GPU_CHECK_FORCE=1. Wheels in .whl/
# (scripts/gpu_wheels.sh) are unpacked offline first. docs/gpu.md has the details.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
FORCE=${XATTR_GPU_CHECK_FORCE:-0}
FAILED=0
STEPS=()   # "name|status|seconds" per finished step

find_python() {  # XATTR_PYTHON, else the checkout's .venv, else python3
    if [ -n "${XATTR_PYTHON:-}" ]; then echo "$XATTR_PYTHON"
    elif [ -x "$ROOT/.venv/bin/python" ]; then echo "$ROOT/.venv/bin/python"
    else echo python3; fi
}

PY=$(find_python)
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "error: $PY cannot import torch (set XATTR_PYTHON=<a python with torch>; docs/gpu.md)"
    exit 1
fi
if [ "$FORCE" != 1 ] && [ "$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null)" != 1 ]; then
    echo "no CUDA GPU here: skipping"
    exit 0
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xattr-gpu-check.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
LOGS=$WORK/logs
mkdir -p "$LOGS" || exit 1

unpack_wheels() {  # carried .whl/*.whl (scripts/gpu_wheels.sh) into a temporary folder first on the path, offline
    ls "$ROOT"/.whl/*.whl >/dev/null 2>&1 || return 0
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
            "$ROOT"/.whl/*.whl; then
        echo "error: the carried wheels in .whl/ do not install for $PY (scripts/gpu_wheels.sh makes them)"
        exit 1
    fi
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
}

unpack_wheels
# this checkout's xattr first on the path: an editable install in a carried venv may point elsewhere
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import xattr" >/dev/null 2>&1; then
    echo "error: $PY cannot import xattr from $ROOT ($("$PY" -c 'import xattr' 2>&1 | tail -1))"
    exit 1
fi

if [ "$FORCE" = 1 ]; then
    DEVICE=cpu; SIZE=--quick; BUDGET=${XATTR_GPU_CHECK_BUDGET_S:-2400}; SCALE=4
else  # default sizes (not --quick); bench_extra adds ViT-B/16 to the transformer baselines
    DEVICE=cuda; SIZE=; BUDGET=${XATTR_GPU_CHECK_BUDGET_S:-540}; SCALE=1
fi
OUT_DIR=${OUT:-gpu_check_out}
mkdir -p "$OUT_DIR" || exit 1
rm -f "$OUT_DIR/summary.md" "$OUT_DIR/steps.log" "$OUT_DIR/env.txt" "$OUT_DIR/logs.tar.gz"
START=$(date +%s)

log() { echo "[gpu_check $(date +%H:%M:%S)] $*"; }

missing_modules() {  # the modules xattr's tests and benchmarks import that this python lacks (space-separated)
    "$PY" - torch torchvision timm hydra omegaconf captum diffusers pydantic scipy pandas skimage sklearn \
        matplotlib filelock PIL tqdm <<'EOF'
import importlib.util, sys
print(" ".join(name for name in sys.argv[1:] if importlib.util.find_spec(name) is None))
EOF
}

environment() {  # GPU, driver, torch/CUDA/cuDNN versions, where xattr and its packages come from
    if command -v nvidia-smi >/dev/null 2>&1; then
        timeout 20 nvidia-smi --query-gpu=index,name,memory.total,driver_version,compute_cap --format=csv
        timeout 20 nvidia-smi | head -n 15
    else
        echo "nvidia-smi: not found"
    fi
    "$PY" - <<'EOF'
import importlib.util, platform, torch, xattr
print(f"python {platform.python_version()} ({platform.machine()}), torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"cuda available {torch.cuda.is_available()}, devices {torch.cuda.device_count()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}")
print(f"xattr from {xattr.__file__}")
for name in ("hydra", "omegaconf", "captum", "diffusers", "pydantic", "timm"):
    spec = importlib.util.find_spec(name)
    print(f"{name} from {spec.origin if spec else 'MISSING'}")
EOF
    echo "device for the benchmarks: $DEVICE ${SIZE:-(default sizes)}; step budget ${BUDGET}s; forced: $FORCE"
    echo "PYTHONPATH=$PYTHONPATH"
    echo "missing Python modules: ${MISSING:-none}"
}

run_step() {  # run_step NAME SECONDS CMD...: the command under a timeout (never past the budget), logged
    local name=$1 limit=$(( $2 * SCALE )); shift 2
    local left=$(( BUDGET - ($(date +%s) - START) )) logfile="$LOGS/$name.log" status t0 rc took
    if [ "$left" -lt 15 ]; then
        status="SKIPPED (budget of ${BUDGET}s spent)"; echo "$status" > "$logfile"; took=0; FAILED=1
    else
        [ "$limit" -gt "$left" ] && limit=$left
        log "$name (timeout ${limit}s): $*"
        t0=$(date +%s)
        echo "\$ $*" > "$logfile"
        timeout --kill-after=10 "$limit" "$@" >> "$logfile" 2>&1
        rc=$?
        took=$(( $(date +%s) - t0 )) status=ok
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status="TIMEOUT after ${limit}s"; FAILED=1
        elif [ "$rc" != 0 ]; then status="FAILED (exit $rc)"; FAILED=1; fi
    fi
    log "$name: $status in ${took}s"
    STEPS+=("$name|$status|$took")
    { echo "===== $name: $status, ${took}s"; cat "$logfile"; echo; } >> "$OUT_DIR/steps.log"
    summary > "$OUT_DIR/summary.md"
}

bench_timeout() {  # seconds for one benchmark on the GPU at default sizes (x4 when forced onto the CPU)
    case $1 in
        bench_ib|bench_diffib|bench_metrics|bench_unet) echo 60 ;;
        *) echo 45 ;;
    esac
}

bench_extra() {  # extra arguments of one benchmark on the GPU
    if [ "$1" = bench_vitxai ] && [ "$FORCE" != 1 ]; then echo --vit-b16; fi
}

ratio_lines() {  # ratio_lines STEP PATTERN: the matching lines of a step's log, trimmed, or a note
    local found
    [ -f "$LOGS/$1.log" ] || { echo "(not run yet)"; return; }
    found=$(grep -E -- "$2" "$LOGS/$1.log" | sed 's/^ *//')
    if [ -n "$found" ]; then echo "$found"; else echo "(not found in $1.log)"; fi
}

section() {  # section TITLE STEP PATTERN
    echo
    echo "### $1"
    echo
    echo '```'
    ratio_lines "$2" "$3"
    echo '```'
}

summary() {  # summary.md: the steps table so far, then the ratios the benchmarks printed
    local s name status took
    echo "# GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    echo
    echo "Device for the benchmarks: \`$DEVICE\` ${SIZE:+(\`$SIZE\` sizes)}; forced CPU run: $FORCE. $(( $(date +%s) - START )) s so far."
    echo "Machine and versions: \`env.txt\`; every step's output: \`steps.log\` (and \`logs.tar.gz\` at the end)."
    [ -n "$MISSING" ] && echo "**Missing Python modules: $MISSING** (carry \`.whl/\` from \`scripts/gpu_wheels.sh\`; docs/gpu.md)."
    echo
    echo "| step | status | seconds |"
    echo "| --- | --- | --- |"
    for s in "${STEPS[@]}"; do
        IFS='|' read -r name status took <<< "$s"
        echo "| $name | $status | $took |"
    done
    echo
    echo "## Ratios"
    section "IBA: B images jointly vs one at a time (and vs a reference-style loop)" bench_ib "joint .* one-at-a-time"
    section "Insertion + deletion vs the RISE one-step loop" bench_metrics "RISE loop .* faster"
    section "DiffIB: batched per-sample fit vs one image at a time" bench_diffib "ratio one-at-a-time / grouped"
    section "DiffIB: amortized vs per-sample" bench_diffib "ratio per-sample .* / amortized|end-to-end ratio"
    section "Stable-Diffusion-size UNet: calls/s, fp16 vs fp32" bench_unet "^UNet2DConditionModel|^fp32:|^SUMMARY unet"
    section "CoIBA vs IBA / IBA*" bench_coiba "^CoIBA / IBA"
    section "Run loader: DataLoader (pinned) vs collating in the main process" bench_loader "^[a-z].*images|ratio"
    section "Gradient methods: time / (passes x forward-backward)" bench_methods "^(tiny_cnn|resnet50) .*forward-backward|^method |^saliency |^integrated_gradients "
    section "Transformer baselines: images/s batched vs one by one" bench_vitxai "^(tiny_vit|vit_b16): |^method |^(rollout|generic_attention|chefer_lrp|beyond_intuition|iia|vit_cx) "
    section "cuda tests" tests "^[0-9]+ (passed|failed|skipped|error)|^(FAILED|ERROR) "
}

log "python $PY, output $OUT_DIR/, device $DEVICE"
MISSING=$(missing_modules)
[ -n "$MISSING" ] && log "missing Python modules: $MISSING; the steps that import them will fail (docs/gpu.md)"
environment > "$OUT_DIR/env.txt" 2>&1
cp "$OUT_DIR/env.txt" "$LOGS/env.txt"
cat "$OUT_DIR/env.txt"

run_step tests 150 "$PY" -m pytest -m cuda -rs -W default -p no:cacheprovider tests/
for script in scripts/bench_*.py; do
    name=$(basename "$script" .py)
    # shellcheck disable=SC2046  # the extra arguments split into words on purpose
    run_step "$name" "$(bench_timeout "$name")" "$PY" "$script" --device "$DEVICE" $SIZE $(bench_extra "$name")
done

tar -czf "$OUT_DIR/logs.tar.gz" -C "$WORK" logs
log "wrote $OUT_DIR/summary.md ($(( $(date +%s) - START )) s); $([ "$FAILED" = 0 ] && echo 'every step passed' || echo 'some steps FAILED')"
exit "$FAILED"
