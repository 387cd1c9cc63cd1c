#!/usr/bin/env node
// Builds the native addon with cmake-js (run by `npm install`). Environment:
//   PLW_CUDA=ON|OFF|AUTO, PLW_CUDA_ARCHS="80;86;89;90", PLW_CPU_ARCH=native, PLW_DEBUG=1
// On failure it says what to install instead of leaving a bare compiler error.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')
const args = ['compile', '--out', 'build']
for (const name of ['PLW_CUDA', 'PLW_CUDA_ARCHS', 'PLW_CPU_ARCH']) {
  if (process.env[name] !== undefined) args.push(`--CD${name}=${process.env[name]}`)
}
if (process.env.PLW_DEBUG) args.push('--debug')
const jobs = process.env.CMAKE_BUILD_PARALLEL_LEVEL || String(require('node:os').availableParallelism())
const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs }

const cmakeJs = require.resolve('cmake-js/bin/cmake-js')
const result = spawnSync(process.execPath, [cmakeJs, ...args], { cwd: root, stdio: 'inherit', env })
if (result.status !== 0) {
  console.error(`
plwtune: building the native addon failed.
  It needs cmake >= 3.18, a C++17 compiler with OpenMP (g++ >= 9 or clang with libomp),
  and, for the CUDA backend, nvcc from the CUDA toolkit (12 or newer).
  - Debian/Ubuntu: apt-get install cmake g++ (libomp-dev for clang)
  - Build without CUDA:        PLW_CUDA=OFF npm rebuild plwtune
  - Build for your GPU only:   PLW_CUDA_ARCHS=90 npm rebuild plwtune
  See docs/building.md for details.`)
  process.exit(result.status || 1)
}
