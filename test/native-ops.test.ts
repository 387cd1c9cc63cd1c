/**
 * The CPU ops of the GPT-2 block (layernorm, linear, gelu, residual, masked attention),
 * checked natively by build/Release/plw_native_tests (test/native/ops_check.cpp): forward and
 * backward against float64 references and finite differences, += accumulation, bitwise
 * determinism across thread counts, packed-segment isolation. This suite runs it and shows
 * its report when a check fails.
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import * as path from 'node:path'

const binary = path.join(__dirname, '..', 'build', 'Release', 'plw_native_tests')

test('native CPU op checks pass (plw_native_tests)', () => {
  if (!existsSync(binary)) {
    throw new Error(`native op tests are not built: ${binary} is missing; run npm run build:native`)
  }
  let output: string
  let status = 0
  try {
    output = execFileSync(binary, [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 100_000 })
  } catch (e) {
    const err = e as { status?: number | null; signal?: string | null; stdout?: string; stderr?: string }
    status = err.status ?? -1
    output = `${err.stdout ?? ''}${err.stderr ?? ''}${err.signal ? `\n(killed by ${err.signal})` : ''}`
  }
  const failed = output.split('\n').filter((line) => line.startsWith('FAIL'))
  const summary = /^\d+ passed, 0 failed$/m
  if (status !== 0 || !summary.test(output)) {
    throw new Error(`plw_native_tests exited with ${status}; failing checks:\n${failed.join('\n')}\n\nfull output:\n${output}`)
  }
  expect(status).toBe(0)
  expect(output).toMatch(summary)
})
