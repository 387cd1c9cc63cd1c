/**
 * The CPU backend gives the same bits whatever the thread count: rows are split across
 * threads but no reduction is (docs/loss-contract.md, "Deterministic CPU results").
 */
import { execFileSync } from 'node:child_process'
import * as path from 'node:path'

const child = path.join(__dirname, 'support', 'determinism-child.js')
const run = (threads: number): string =>
  execFileSync(process.execPath, [child], { env: { ...process.env, OMP_NUM_THREADS: String(threads) }, encoding: 'utf8' })

test('every CPU kernel gives bitwise the same results with 1, 2 and 3 threads', () => {
  const one = run(1)
  expect(one).toMatch(/^[0-9a-f]{64}$/)
  expect(run(2)).toBe(one)
  expect(run(3)).toBe(one)
})
