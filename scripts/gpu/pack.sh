#!/usr/bin/env bash
# Packs what the GPU machine needs to build plwtune and run its GPU suites and benchmarks,
# into .device/ (Node, by ../shared/device/bundle.sh) and .gpu/ (compiled dist/ and a
# minimal node_modules as one tarball), small enough to carry (64 MiB in all).
# Then, on the device tool: carry [".device", ".gpu"], command `bash scripts/gpu/run.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p "$(git rev-parse --git-dir)/info"  # bundle.sh records .device/ in info/exclude
bash ../shared/device/bundle.sh
npx tsc -p tsconfig.json
rm -rf .gpu && mkdir -p .gpu/nm
# The runtime set only: the build (cmake-js, node-addon-api), jest, tinybench and the data
# layer's two packages, at the versions package-lock.json pins.
pin() { node -p "require('./package-lock.json').packages['node_modules/$1'].version"; }
( cd .gpu/nm && echo '{"name":"plwtune-gpu-runtime","version":"0.0.0","private":true}' > package.json &&
  npm install --ignore-scripts --no-audit --no-fund --silent \
    "jest@$(cd ../.. && pin jest)" "cmake-js@$(cd ../.. && pin cmake-js)" "node-addon-api@$(cd ../.. && pin node-addon-api)" \
    "tinybench@$(cd ../.. && pin tinybench)" "@huggingface/tokenizers@$(cd ../.. && pin @huggingface/tokenizers)" \
    "@huggingface/jinja@$(cd ../.. && pin @huggingface/jinja)" )
tar -C .gpu/nm -cJf .gpu/node_modules.tar.xz node_modules
tar -cJf .gpu/dist.tar.xz dist
rm -rf .gpu/nm
du -sh .device .gpu
