/**
 * Every CUDA kernel against its CPU twin, without a GPU: test/emulator/build.js turns
 * native/cuda into host C++ for a CUDA emulator (each CUDA thread an OS thread, cuBLASLt a
 * reference implementation), builds the test programs with g++ and this suite runs them.
 * It needs only g++ (C++20) and OpenMP, no CUDA toolkit. What the emulator checks and what
 * it cannot (memory model, warp scheduling, real cuBLASLt, speed): docs/testing.md. The GPU
 * suites (cuda.test.ts, cuda-engine.test.ts) remain the hardware check.
 */
import { spawnSync } from 'child_process'

interface Program {
  name: string
  args: string[]
  /** Tells apart runs of one program with different arguments. */
  label?: string
  path: string
}
// build.js is plain node (CI runs it without TypeScript too), hence the typed require.
const emulator = require('./emulator/build') as {
  programs: Array<{ name: string; label?: string }>
  build(options?: { log?: (line: string) => void }): Promise<Program[]>
}

let built: Program[] | undefined
let buildError: unknown

beforeAll(async () => {
  try {
    built = await emulator.build({ log: (line) => process.stdout.write(`[cuda-emulator] ${line}\n`) })
  } catch (e) {
    buildError = e
  }
}, 15 * 60_000) // a cold build is about a minute on 2 cores

test('the CUDA sources transform and build for the emulator', () => {
  if (buildError) throw buildError
})

test.each(emulator.programs.map((p) => p.label ?? p.name))('%s passes in the emulator', (name) => {
  if (buildError || !built) throw new Error('the emulator build failed (see the test above)')
  const program = built.find((p) => (p.label ?? p.name) === name)!
  const r = spawnSync(program.path, program.args, { encoding: 'utf8', timeout: 10 * 60_000, maxBuffer: 64 << 20 })
  if (r.status !== 0) {
    const how = r.error ? String(r.error) : r.signal ? `signal ${r.signal}` : `exit code ${r.status}`
    throw new Error(`${name} failed (${how}):\n${r.stdout}${r.stderr}`)
  }
}, 10 * 60_000)
