#!/usr/bin/env bash
# Wheels of the Python packages xattr needs that a lent GPU machine's python3 lacks, saved to .whl/ (ignored by
# git, about 10 MB): name `.whl` in the device tool's `carry` and scripts/gpu_check.sh unpacks them there with
# pip --no-index --no-deps into a temporary folder (no network). Run it here, where pip reaches a package index.
# Versions: those of this machine's interpreter (XATTR_PYTHON, else .venv/bin/python, else python3); wheels for
# CPython XATTR_WHEELS_PYTHON_VERSION (default 3.12, the GPU image's python3). docs/gpu.md has the details.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
if [ -n "${XATTR_PYTHON:-}" ]; then PY=$XATTR_PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
TARGET=${XATTR_WHEELS_PYTHON_VERSION:-3.12}
DEST=${XATTR_WHEELS_DIR:-.whl}
# absent from the GPU image's python3 (docs/gpu.md), with what they need that it lacks or has too old
PACKAGES="hydra-core omegaconf antlr4-python3-runtime captum diffusers pydantic pydantic-core annotated-types
typing-inspection typing-extensions importlib-metadata"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
--platform manylinux2014_x86_64 --platform manylinux1_x86_64"

mkdir -p "$DEST" || exit 1
for name in $PACKAGES; do
    version=$("$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$name" 2>/dev/null) \
        || { echo "error: $name is not installed for $PY (its version is the one fetched)"; exit 1; }
    # shellcheck disable=SC2086  # PLATFORMS splits into words on purpose
    if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$TARGET" --implementation cp \
            $PLATFORMS -d "$DEST" "$name==$version" 2>/dev/null; then
        # no wheel published (antlr4-python3-runtime 4.9.3 is a source archive): build a pure-Python one here
        "$PY" -m pip wheel -q --no-deps -w "$DEST" "$name==$version" \
            || { echo "error: no wheel of $name==$version for CPython $TARGET"; exit 1; }
    fi
done
ls "$DEST"/*.whl | sed 's|.*/||'
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST/ (carry: [\"$DEST\"])"
