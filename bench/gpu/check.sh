#!/usr/bin/env bash
# GPU check of the CUDA kernels, run from anywhere on a machine with an NVIDIA GPU, nvcc, cmake,
# ninja, torch with CUDA, pybind11 and scikit-build-core (no network needed):
#   1. build and install evoforge with its CUDA kernels (EVOFORGE_CUDA=ON, CUDAARCHS=native);
#   2. run the CUDA tests (pytest -m cuda); test modules that cannot import because an optional
#      package (hypothesis, moocore, pymoo) is missing are left out, and said so;
#   3. run the GPU benchmarks (hashing, mutation, quantised layers: python/evoforge/bench/
#      layers_gpu.py, then Pareto: pareto_gpu.py): JSON in bench/results/ and in $OUT when set;
#      the Pareto table is printed last.
# Each step's time limit comes out of one budget (TOTAL_S, default 470 s) so that the whole
# script ends in under 8 minutes; the benchmark skips the cells it has no time left for.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -n "${OUT:-}" && -z "${EVOFORGE_CHECK_LOGGED:-}" ]]; then  # keep the whole log with the results
  mkdir -p "$OUT"
  EVOFORGE_CHECK_LOGGED=1 exec > >(tee "$OUT/check.log") 2>&1
fi
PY=${PYTHON:-$(command -v python || command -v python3)}
start=$(date +%s)
TOTAL_S=${TOTAL_S:-470}
elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( TOTAL_S - $(date +%s) + start )); }
min() { echo $(( $1 < $2 ? $1 : $2 )); }
max() { echo $(( $1 > $2 ? $1 : $2 )); }

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "== build (CUDAARCHS=${CUDAARCHS:-native}, EVOFORGE_CUDA=ON)"
log=$(mktemp)
if ! CUDAARCHS=${CUDAARCHS:-native} EVOFORGE_CUDA=ON PIP_DISABLE_PIP_VERSION_CHECK=1 \
    timeout -k 5 "$(min 220 "$(left)")" "$PY" -m pip install -v --no-build-isolation --no-deps --no-index . \
    >"$log" 2>&1; then
  tail -n 60 "$log"
  echo "build failed after $(elapsed) s"
  exit 1
fi
grep -E "warning" "$log" | head -n 20 || true
echo "built in $(elapsed) s"

echo "== evoforge.info()"
(cd /tmp && "$PY" -c "import json, evoforge; print(json.dumps(evoforge.info(), indent=1, default=str)); assert evoforge.has_cuda(), 'evoforge.has_cuda() is False'")

echo "== pytest -m cuda"
ignore=()
while IFS= read -r f; do
  [[ -n "$f" ]] && ignore+=("--ignore=$f")
done < <("$PY" - <<'EOF'
import importlib.util, pathlib, sys
sys.path.insert(0, "tests")
for f in sorted(p for p in pathlib.Path("tests").rglob("test_*.py") if "fuzz" not in p.parts):
    spec = importlib.util.spec_from_file_location(f.stem, f)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except ModuleNotFoundError as exc:
        if exc.name in ("hypothesis", "moocore", "pymoo"):
            print(f"   {f} left out: {exc}", file=sys.stderr)
            print(f)
    except Exception:  # anything else: pytest reports it
        pass
EOF
)
junit=()
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  junit=("--junitxml=$OUT/pytest-cuda.xml")
fi
# a failing test must not hide the benchmarks (the device time is short): report and go on
per_test=()
"$PY" -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout=90)
tests_ok=passed
timeout -k 5 "$(max 30 "$(min 200 $(( $(left) - 100 )))")" "$PY" -m pytest -q -rfE --tb=short -m cuda \
  -p no:cacheprovider "${per_test[@]}" "${ignore[@]}" "${junit[@]}" tests/ || tests_ok=FAILED
echo "tests ${tests_ok} at $(elapsed) s"

echo "== hashing and mutation GPU benchmarks"
mkdir -p bench/results
timeout -k 5 "$(max 30 "$(min 60 "$(left)")")" "$PY" -c "
import json, evoforge.bench.hashing as h
r = h.run_gpu(1024)
print(json.dumps(r, indent=1, default=str))
json.dump(r, open('bench/results/hashing_gpu.json', 'w'), indent=1, default=str)" || echo "hashing GPU benchmark failed"
timeout -k 5 "$(max 60 "$(min 120 "$(left)")")" "$PY" -m evoforge.bench.mutation --cuda-only \
  --sizes 1000 10000 100000 --genes 224 1000 --out bench/results/mutation_gpu.json || echo "mutation GPU benchmark failed"
if [[ -n "${OUT:-}" ]]; then cp bench/results/hashing_gpu.json bench/results/mutation_gpu.json "$OUT/" 2>/dev/null || true; fi

echo "== quantised layers GPU benchmark (quant_matmul vs torch fp16 F.linear)"
lt=$(max 60 "$(min 120 $(( $(left) - 150 )))")
timeout -k 5 "$lt" "$PY" -m evoforge.bench.layers_gpu --out bench/results/layers_gpu.json --sweep 1 2 4 8 \
  --deadline $(( lt - 20 )) || echo "layers GPU benchmark failed"

echo "== GPU benchmark"
mkdir -p bench/results
rest=$(max 90 "$(left)")
timeout -k 5 "$rest" "$PY" -m evoforge.bench.pareto_gpu --out bench/results/pareto_gpu.json \
  --budget $(( rest / 2 )) --deadline $(( rest - 75 )) || echo "Pareto GPU benchmark failed"
echo "CUDA tests: ${tests_ok}"
