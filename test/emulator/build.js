#!/usr/bin/env node
// Builds the CUDA emulator's test programs (docs/testing.md, "CUDA kernels in the emulator"):
//   1. copies native/ into build/emulator/src, turning each native/cuda source into host C++
//      (launches -> emu::launch, extern __shared__ -> emu::dynamic_shared, PTX -> C++);
//   2. compiles it with the emulator's headers (test/emulator/include: no CUDA toolkit
//      needed) and the test programs with g++, in parallel, reusing every object whose
//      sources, headers and flags did not change;
//   3. links one binary per test_*.cpp, each with the whole backend.
// `node test/emulator/build.js` builds; `--run` also runs every program (exit 1 on a
// failure). test/cuda-emulator.test.ts drives the same functions.
'use strict'
const fs = require('fs')
const os = require('os')
const path = require('path')
const { spawn, spawnSync } = require('child_process')

const repo = path.resolve(__dirname, '..', '..')
const here = __dirname
// PLW_EMU_OUT moves the build (two builds side by side); PLW_EMU_PROGRAMS=a,b limits it to those programs.
const out = process.env.PLW_EMU_OUT ? path.resolve(process.env.PLW_EMU_OUT) : path.join(repo, 'build', 'emulator')
const src = path.join(out, 'src')

// The test programs and their arguments (each exits non-zero on a failure). A program may run
// more than once with different arguments (its `label` tells the runs apart): test_engine's
// precisions run as two processes, each well inside the suite's per-run timeout.
const allPrograms = [
  { name: 'test_elementwise', args: [] },
  { name: 'test_loss', args: [] },
  { name: 'test_linear_adamw', args: [] },
  { name: 'test_attention', args: [] },
  { name: 'test_flash_attention', args: [] },
  { name: 'test_flash_attention_mma', args: [] },
  { name: 'test_engine', args: ['f32'], label: 'test_engine f32' },
  { name: 'test_engine', args: ['bf16'], label: 'test_engine bf16' },
  { name: 'test_llama_ops', args: [] },
  { name: 'test_lora_ops', args: [] },
]
const only = process.env.PLW_EMU_PROGRAMS ? process.env.PLW_EMU_PROGRAMS.split(',') : null
const programs = only ? allPrograms.filter((p) => only.includes(p.name)) : allPrograms

const common = ['-std=c++20', '-O1', '-pthread', '-fopenmp', '-I', path.join(here, 'include'), '-I', src,
  '-DPLW_WITH_CUDA=1', '-DPLW_HAVE_CUBLASLT=1']
const ownFlags = [...common, '-I', here, '-Wall', '-Wextra']
const cudaFlags = [...common, '-include', 'emu.h']

// ---------------------------------------------------------------- transform

// native/cuda's files that the emulator replaces instead of transforming.
const replaced = new Set(['runtime.cu', 'runtime_stub.cpp'])
// The only inline PTX in the kernels (common.cuh's bf16 unpacks) and its C++ meaning.
const ptx = new Map([
  ['asm volatile("shl.b32 %0, %1, 16;" : "=r"(r) : "r"(w));', 'r = w << 16;'],
  ['asm volatile("and.b32 %0, %1, 0xffff0000;" : "=r"(r) : "r"(w));', 'r = w & 0xffff0000u;'],
])

// A section of a native/cuda source between `// emulator-replace-begin: NAME` and
// `// emulator-replace-end` is replaced by `#include "NAME"`, a header of test/emulator/include
// (line breaks kept, so compiler messages keep their line numbers): mma.cuh's mma.sync
// wrappers become mma_emu.h's emulated warp instruction, and nothing else of the file changes.
const sectionPattern = /^[ \t]*\/\/ emulator-replace-begin: ([\w.]+)[^\n]*\n[\s\S]*?^[ \t]*\/\/ emulator-replace-end[^\n]*$/gm

class TransformError extends Error {}

// Splits a launch configuration at its top-level commas.
function splitConfig(text) {
  const parts = ['']
  let depth = 0
  for (const ch of text) {
    if ('(<[{'.includes(ch)) depth++
    if (')>]}'.includes(ch)) depth--
    if (ch === ',' && depth === 0) parts.push('')
    else parts[parts.length - 1] += ch
  }
  return parts.map((p) => p.trim())
}

// Blanks comments and string literals (keeping line breaks), to look for leftovers in code.
function codeOnly(text) {
  return text.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*|"(?:[^"\\\n]|\\.)*"/g, (m) => m.replace(/[^\n]/g, ' '))
}

function lineOf(text, index) {
  return text.slice(0, index).split('\n').length
}

function transformCuda(file, text) {
  let s = text.replace(sectionPattern, (m, header) => {
    if (!fs.existsSync(path.join(here, 'include', header))) {
      throw new TransformError(`${file}: emulator-replace-begin names ${header}, not in test/emulator/include`)
    }
    return `#include "${header}"` + '\n'.repeat(m.split('\n').length - 1)
  })
  const stray = /\/\/ emulator-replace-(?:begin|end)/.exec(s)
  if (stray) {
    throw new TransformError(`${file}:${lineOf(s, stray.index)}: emulator-replace-begin/end markers do not pair up`)
  }
  for (const [from, to] of ptx) s = s.split(from).join(to)
  // kernel<<<grid, block[, smem]>>>(args) -> emu::launch(kernel, grid, block, smem, args);
  // the kernel name may carry template arguments one level deep.
  s = s.replace(/([A-Za-z_][\w:]*(?:<(?:[^<>;]|<[^<>;]*>)*>)?)\s*<<<([^;]*?)>>>\s*\(\s*(\)?)/g,
    (m, kernel, config, close, offset) => {
      const parts = splitConfig(config)
      if (parts.length < 2 || parts.length > 3) {
        throw new TransformError(`${file}:${lineOf(s, offset)}: launch with ${parts.length} configuration ` +
          `arguments (the emulator takes grid, block and optionally dynamic shared memory): ${m}`)
      }
      const smem = parts[2] ?? '0'
      return `emu::launch(${kernel}, ${parts[0]}, ${parts[1]}, ${smem}${close ? ')' : ', '}`
    })
  s = s.replace(/extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w:]+)\s+(\w+)\s*\[\s*\]\s*;/g,
    '$1* $2 = emu::dynamic_shared<$1>();')
  // Anything CUDA-only left in the code means the sources use a form this transform does not
  // know: stop here rather than compile (or skip) a kernel wrongly.
  const code = codeOnly(s)
  for (const [pattern, what] of [[/<<<|>>>\s*\(/, 'kernel launch'], [/\bextern\s+__shared__/, 'extern __shared__'],
    [/\basm\b/, 'inline PTX'], [/\b__shfl_(?:up|idx)?_sync\b|\b__shfl_sync\b/, 'warp shuffle']]) {
    const hit = pattern.exec(code)
    if (hit) {
      throw new TransformError(`${file}:${lineOf(code, hit.index)}: ${what} the emulator transform does not ` +
        `understand: ${s.split('\n')[lineOf(code, hit.index) - 1].trim()} (extend test/emulator/build.js)`)
    }
  }
  return s
}

// Writes only when the content changed, so that unchanged sources keep their mtime.
function writeIfChanged(file, text) {
  if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === text) return
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text)
}

function transform() {
  const native = path.join(repo, 'native')
  for (const dir of ['common', 'cpu', 'engine']) {
    // every file, subfolders (engine/arch) included
    for (const f of fs.readdirSync(path.join(native, dir), { recursive: true })) {
      if (!fs.statSync(path.join(native, dir, f)).isFile()) continue
      writeIfChanged(path.join(src, 'native', dir, f), fs.readFileSync(path.join(native, dir, f), 'utf8'))
    }
  }
  const cuda = fs.readdirSync(path.join(native, 'cuda')).filter((f) => !replaced.has(f))
  for (const f of cuda) {
    const text = fs.readFileSync(path.join(native, 'cuda', f), 'utf8')
    const isCuda = f.endsWith('.cu') || f.endsWith('.cuh')
    const name = f.endsWith('.cu') ? f.slice(0, -3) + '.cpp' : f
    writeIfChanged(path.join(src, 'native', 'cuda', name), isCuda ? transformCuda(`native/cuda/${f}`, text) : text)
  }
  return cuda.filter((f) => f.endsWith('.cu')).map((f) => f.slice(0, -3))
}

// ---------------------------------------------------------------- compile and link

function mtime(file) {
  try {
    return fs.statSync(file).mtimeMs
  } catch {
    return -1
  }
}

// An object is up to date when it is newer than every dependency g++ listed (-MMD) and was
// built with the same command.
function upToDate(obj, cmd) {
  const t = mtime(obj)
  if (t < 0 || !fs.existsSync(obj + '.d') || !fs.existsSync(obj + '.cmd')) return false
  if (fs.readFileSync(obj + '.cmd', 'utf8') !== cmd) return false
  const deps = fs.readFileSync(obj + '.d', 'utf8').replace(/\\\n/g, ' ').split(':').slice(1).join(':')
  return deps.split(/\s+/).filter(Boolean).every((d) => {
    const dt = mtime(d)
    return dt >= 0 && dt <= t
  })
}

function run(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d) => (output += d))
    child.stderr.on('data', (d) => (output += d))
    child.on('error', (e) => resolve({ code: -1, output: output + String(e) }))
    child.on('close', (code) => resolve({ code, output }))
  })
}

// Runs the jobs, `parallel` at a time; rejects with every failed job's output.
async function runAll(jobs, parallel) {
  const failures = []
  let next = 0
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]
      const r = await run('g++', job.args)
      if (r.code !== 0) failures.push(`${job.what} failed:\n$ g++ ${job.args.join(' ')}\n${r.output}`)
      else if (job.done) job.done()
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, parallel) }, worker))
  if (failures.length) throw new Error(failures.join('\n'))
}

function compileJob(source, obj, flags) {
  const args = [...flags, '-MMD', '-MF', obj + '.d', '-c', source, '-o', obj]
  const cmd = args.join(' ')
  if (upToDate(obj, cmd)) return null
  fs.mkdirSync(path.dirname(obj), { recursive: true })
  return { what: `compiling ${path.relative(repo, source)}`, args, done: () => fs.writeFileSync(obj + '.cmd', cmd) }
}

async function build({ log = () => {} } = {}) {
  const started = Date.now()
  if (spawnSync('g++', ['--version']).status !== 0) throw new Error('g++ not found: the emulator tests need it')
  const kernels = transform()
  const obj = path.join(out, 'obj')
  const library = []
  const jobs = []
  const add = (source, o, flags) => {
    const job = compileJob(source, o, flags)
    if (job) jobs.push(job)
    return o
  }
  for (const k of kernels) {
    library.push(add(path.join(src, 'native', 'cuda', k + '.cpp'), path.join(obj, 'cuda', k + '.o'), cudaFlags))
  }
  for (const dir of ['cpu', 'engine']) {
    for (const f of fs.readdirSync(path.join(src, 'native', dir)).filter((f) => f.endsWith('.cpp'))) {
      library.push(add(path.join(src, 'native', dir, f), path.join(obj, dir, f.replace(/\.cpp$/, '.o')), common))
    }
  }
  for (const f of ['reference_cublaslt.cpp', 'runtime_shim.cpp']) {
    library.push(add(path.join(here, f), path.join(obj, 'emulator', f.replace(/\.cpp$/, '.o')), ownFlags))
  }
  const binaries = [...new Set(programs.map((p) => p.name))]
  const tests = binaries.map((name) => add(path.join(here, name + '.cpp'), path.join(obj, 'tests', name + '.o'), ownFlags))
  const parallel = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
  log(`emulator: ${jobs.length} of ${library.length + tests.length} sources to compile, ${parallel} at a time`)
  await runAll(jobs, parallel)
  const links = []
  binaries.forEach((name, i) => {
    const exe = path.join(out, name)
    const inputs = [...library, tests[i]]
    const args = [...inputs, '-pthread', '-fopenmp', '-o', exe]
    const t = mtime(exe)
    if (t < 0 || inputs.some((o) => mtime(o) > t)) links.push({ what: `linking ${name}`, args })
  })
  await runAll(links, parallel)
  log(`emulator: built in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return programs.map((p) => ({ ...p, path: path.join(out, p.name) }))
}

module.exports = { build, programs, transformCuda, TransformError }

if (require.main === module) {
  build({ log: console.log }).then((built) => {
    if (!process.argv.includes('--run')) return
    let failed = 0
    for (const p of built) {
      const started = Date.now()
      const r = spawnSync(p.path, p.args, { stdio: 'inherit' })
      console.log(`${p.label ?? p.name}: exit ${r.status} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
      if (r.status !== 0) failed++
    }
    process.exitCode = failed ? 1 : 0
  }, (e) => {
    console.error(e.message)
    process.exitCode = 1
  })
}
