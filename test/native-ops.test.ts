/**
 * The CPU ops of the GPT-2 block (layernorm, linear, gelu, residual, masked attention),
 * checked natively by build/Release/plw_native_tests (test/native/ops_check.cpp): forward and
 * backward against float64 references and finite differences, += accumulation, bitwise
 * determinism across thread counts, packed-segment isolation, and the SGEMM on every kernel the
 * machine has (test/native/sgemm_check.cpp). This suite runs it and shows its report when a
 * check fails, then runs the SGEMM checks again with PLW_CPU_KERNEL=avx2 (the AVX2 kernel
 * chosen from the environment, where the machine also has AVX-512).
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import * as path from 'node:path'

const binary = path.join(__dirname, '..', 'build', 'Release', 'plw_native_tests')

function runNativeTests(args: string[], env: NodeJS.ProcessEnv): { status: number; output: string } {
  if (!existsSync(binary)) {
    throw new Error(`native op tests are not built: ${binary} is missing; run npm run build:native`)
  }
  try {
    const output = execFileSync(binary, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 100_000, env })
    return { status: 0, output }
  } catch (e) {
    const err = e as { status?: number | null; signal?: string | null; stdout?: string; stderr?: string }
    return {
      status: err.status ?? -1,
      output: `${err.stdout ?? ''}${err.stderr ?? ''}${err.signal ? `\n(killed by ${err.signal})` : ''}`,
    }
  }
}

function expectPassed(run: { status: number; output: string }): void {
  const failed = run.output.split('\n').filter((line) => line.startsWith('FAIL'))
  const summary = /^\d+ passed, 0 failed$/m
  if (run.status !== 0 || !summary.test(run.output)) {
    throw new Error(`plw_native_tests exited with ${run.status}; failing checks:\n${failed.join('\n')}\n\nfull output:\n${run.output}`)
  }
  expect(run.status).toBe(0)
  expect(run.output).toMatch(summary)
}

test('native CPU op checks pass (plw_native_tests)', () => {
  expectPassed(runNativeTests([], process.env))
})

test('SGEMM checks pass with PLW_CPU_KERNEL=avx2 (plw_native_tests --sgemm)', () => {
  const run = runNativeTests(['--sgemm'], { ...process.env, PLW_CPU_KERNEL: 'avx2' })
  expectPassed(run)
  expect(run.output).toMatch(/^ok {3}sgemm kernel at start: (avx2|generic) /m)
})
