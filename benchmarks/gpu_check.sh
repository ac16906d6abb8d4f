#!/usr/bin/env bash
# The GPU check in one command, from the repository root on a machine with a CUDA GPU:
#   bash benchmarks/gpu_check.sh [OUT]        (OUT defaults to gpu_check/; add --dry-cpu to try it on a CPU)
# It needs torch (a CUDA build), transformers, peft and accelerate, which CUDA PyTorch images have; r3lm is
# imported from this checkout, so nothing is installed. vLLM and pyjaspar are used when present.
# PYTHON names the interpreter (python3 by default).
set -euo pipefail
out="${1:-gpu_check}"
shift || true
python="${PYTHON:-python3}"
"$python" - <<'PY'
import importlib, sys
missing = [name for name in ("torch", "transformers", "peft", "accelerate", "pandas", "pyarrow", "jsonschema", "yaml")
           if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages: {', '.join(missing)}")
PY
PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" "$python" benchmarks/gpu_check.py --out "$out" "$@"
echo "summary: $out/summary.json"
