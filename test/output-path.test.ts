/**
 * Output paths are checked before any work (ts/output-path.ts): a path under /proc (where
 * Node's recursive mkdir spins forever), a file in the way, an unwritable directory — each a
 * message naming the flag and the path, within a second, and nothing written.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { OutputPathError, prepareOutputDir, prepareOutputFile } from '../ts/output-path'
import { Trainer } from '../ts/train/trainer'
import { resolveConfig } from '../ts/train/config'
import { dataSwapCommand } from '../ts/commands/data-swap'
import { capture } from './commands/io'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-out-'))

test('a directory is made component by component and probed; the probe leaves nothing', () => {
  const d = tmp()
  const out = path.join(d, 'a', 'b', 'c')
  expect(prepareOutputDir(out, '--out')).toBe(out)
  expect(fs.readdirSync(out)).toEqual([])
})

test('a path under /proc fails at once instead of hanging', () => {
  if (!fs.existsSync('/proc/self')) return // not Linux
  const t0 = Date.now()
  expect(() => prepareOutputDir('/proc/plw/run', '--out')).toThrow(new OutputPathError('--out /proc/plw/run: cannot create /proc/plw (the file system does not allow creating it here)'))
  expect(Date.now() - t0).toBeLessThan(1000)
})

test('a file in the way, and a directory where a file is expected, are named', () => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'f'), 'x')
  expect(() => prepareOutputDir(path.join(d, 'f', 'run'), '--out')).toThrow(`${path.join(d, 'f')} is a file, not a directory`)
  expect(() => prepareOutputFile(d, '--out')).toThrow(`--out ${d}: is a directory, expected a file`)
})

test('an unwritable directory is refused before any work', () => {
  if (process.getuid?.() === 0) return // root writes anywhere: nothing to test
  const d = tmp()
  fs.chmodSync(d, 0o500)
  try {
    expect(() => prepareOutputFile(path.join(d, 'r.jsonl'), '--out')).toThrow(/cannot write there \(permission denied\)/)
  } finally {
    fs.chmodSync(d, 0o700)
  }
})

test('train and data swap refuse a bad --out before reading anything', async () => {
  const d = tmp()
  fs.writeFileSync(path.join(d, 'f'), 'x')
  const out = path.join(d, 'f', 'run')
  const c = resolveConfig({ source: 'test', values: { device: 'cpu', data: path.join(d, 'missing.json'), out } })
  // the data file does not exist either: the output path is what is reported, first
  await expect(new Trainer(c).fit()).rejects.toThrow(`--out ${out}: ${path.join(d, 'f')} is a file, not a directory`)
  const r = await capture(dataSwapCommand, ['--data', path.join(d, 'missing.json'), '--out', path.join(out, 'x.json')])
  expect(r.code).toBe(2)
  expect(r.err).toMatch(/--out .*x\.json: .* is a file, not a directory/)
})
