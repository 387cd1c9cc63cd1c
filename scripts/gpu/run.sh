#!/usr/bin/env bash
# On the GPU machine (see pack.sh): build with CUDA and cuBLASLt, run the GPU suites, one
# compute-sanitizer pass, and the GPU benchmarks beside PyTorch. Logs and results go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/plw-gpu-out}
mkdir -p "$OUT"
source .device/env.sh
tar -xJf .gpu/node_modules.tar.xz
tar -xJf .gpu/dist.tar.xz
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
# cuBLASLt: the toolkit's, else PyTorch's nvidia-cublas wheel.
if ! find /usr/local/cuda*/ -name cublasLt.h 2>/dev/null | grep -q .; then
  PLW_CUBLAS_ROOT=$(python3 -c "import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))" 2>/dev/null || true)
  export PLW_CUBLAS_ROOT
  echo "cuBLASLt from ${PLW_CUBLAS_ROOT:-nowhere}" | tee -a "$OUT/gpu.txt"
fi
PLW_CUDA=ON PLW_CUDA_ARCHS=${PLW_CUDA_ARCHS:-90-real} node scripts/build-native.js > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
node -e "console.log(JSON.stringify(require('./build/Release/plwtune.node').backendInfo()))" | tee -a "$OUT/gpu.txt"
jest=node_modules/jest/bin/jest.js
node "$jest" -c jest.dist.config.js 'cuda(-engine)?\.test' 2>&1 | tee "$OUT/cuda-tests.log" | tail -30
compute-sanitizer --tool memcheck --error-exitcode 3 node "$jest" -c jest.dist.config.js dist/test/cuda.test.js > "$OUT/sanitizer.log" 2>&1
echo "compute-sanitizer exit $?" | tee -a "$OUT/gpu.txt"
tail -5 "$OUT/sanitizer.log"
# The fused attention inside the engine (f32 and bf16, one micro-step): racecheck and memcheck.
for tool in racecheck memcheck; do
  compute-sanitizer --tool $tool --error-exitcode 3 node "$jest" -c jest.dist.config.js dist/test/cuda-engine.test.js \
    -t 'recompute block.*one micro-step' > "$OUT/sanitizer-flash-$tool.log" 2>&1
  echo "compute-sanitizer $tool (fused attention) exit $?" | tee -a "$OUT/gpu.txt"
done
# The fused kernels against the cuBLASLt attention, per --recompute mode (docs/memory.md).
node dist/bench/recompute.js --device cuda 2>&1 | tee "$OUT/recompute-bench.md"
# Llama-family models saved by plwtune, loaded by transformers: logits compared (bench/RESULTS.md).
node dist/bench/export-for-transformers.js "$OUT/hf" > "$OUT/hf-export.log" 2>&1 \
  && python3 scripts/gpu/llama_check.py --out "$OUT/llama-check.json" "$OUT"/hf/*.json 2>&1 | tail -5
# Their LoRA adapters (PEFT format), loaded by peft.PeftModel on the same bases: logits compared.
for a in "$OUT"/hf/*-lora; do
  python3 scripts/gpu/peft_adapter_check.py --base "${a%-lora}" --adapter "$a" --out "$a.peft-check.json" 2>&1 | tail -1
done
node dist/bench/run.js --device cuda --json "$OUT/bench-gpu.json" 2>&1 | tee "$OUT/bench.log" | tail -40
# bf16 fused attention runs the tensor-core (mma.sync) kernels by default: the SIMT ones beside
# them, and the HMMA instructions in the built SASS (none would mean no tensor-core path).
PLW_CUDA_FLASH=simt node dist/bench/run.js --device cuda --only attn --json "$OUT/bench-attn-simt.json" 2>&1 \
  | tee "$OUT/bench-attn-simt.log" | tail -12
command -v cuobjdump > /dev/null && echo "HMMA in SASS: $(cuobjdump -sass build/Release/plwtune.node 2>/dev/null | grep -c HMMA)" \
  | tee -a "$OUT/gpu.txt"
