/**
 * A disk that fills up in the middle of a save. Whatever was being written (a checkpoint,
 * final/, best/, an adapter, a merged model, metrics.jsonl, the run's config), the save removes
 * what it wrote, the previous checkpoint stays loadable, the one message names the file, the
 * reason (ENOSPC) and the bytes the save needs, and `--resume` from the checkpoint left gives
 * bitwise the final weights of the uninterrupted run.
 *
 * The full disk is simulated with the write budget of ts/atomic-write.ts (every write fails
 * with ENOSPC once N bytes are written, the last one partly: PLWTUNE_TEST_WRITE_BUDGET for the
 * CLI, setWriteBudgetForTests in this process) and, where the machine lets a test mount a file
 * system in a private mount namespace (`unshare -m`: root with CAP_SYS_ADMIN; skipped
 * elsewhere), made real: a 512 KiB tmpfs that the run fills.
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { WriteError, setWriteBudgetForTests } from '../../ts/atomic-write'
import { initModel, loadModel } from '../../ts/model'
import { llamaConfig } from '../../ts/arch'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { openSafetensors } from '../../ts/safetensors'
import { openTensorDir, writeTensorDir } from '../../ts/tensor-dir'
import { mergeCommand } from '../../ts/commands/merge'
import { RunDir } from '../../ts/train/run-dir'
import { Trainer } from '../../ts/train/trainer'
import { writeTokenizerFiles } from '../../ts/train/tokenizer-files'
import { capture } from '../commands/io'
import { CLI, runCli } from '../support/cli-child'
import { tinyTrainConfig } from '../support/train-config'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-wfail-'))

/** Every name under `dir` that a save in progress or a killed one leaves: `.X.PID.tmp`, `X.old-PID`, `.X.deleting-PID`. */
function leftovers(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true }).map(String).filter((f) => /(\.\d+\.tmp|\.old-\d+|\.deleting-\d+)$/.test(path.basename(f)))
}

const bytesOf = (dir: string) => fs.readdirSync(dir).reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0)
const same = (a: string, b: string) => fs.readFileSync(a).equals(fs.readFileSync(b))

/** The bytes of the tensors in a safetensors file (data, headers not counted). */
function tensorBytes(file: string): number {
  const st = openSafetensors(file)
  const n = [...st.tensors.values()].reduce((s, t) => s + t.end - t.begin, 0)
  st.close()
  return n
}

afterEach(() => { setWriteBudgetForTests(null) })

// ---------------------------------------------------------------------------------------------
// the CLI: one message, exit 1, and --resume finishes the run bitwise

/** A tiny run of the CLI: 6 steps, a checkpoint every 2 (2 kept), no validation (so no best/), on an alpaca file. */
function cliArgs(data: string, out: string): string[] {
  return ['train', '--device', 'cpu', '--data', data, '--init-n-layer', '1', '--init-n-head', '2', '--init-n-embd', '32',
    '--init-n-positions', '64', '--max-steps', '6', '--save-every', '2', '--keep-checkpoints', '2', '--batch-size', '4',
    '--val-split', '0', '--test-split', '0', '--out', out]
}

function alpacaFile(dir: string): string {
  const data = path.join(dir, 'd.json')
  fs.writeFileSync(data, JSON.stringify(Array.from({ length: 60 }, (_, i) => ({ instruction: 'Add one.', input: `${i}`, output: `${i + 1}` }))))
  return data
}

/**
 * What the CLI run into `out` that failed in step-4's save must say, and leave (looked at in
 * `left`: `out` itself, or a copy of it).
 */
function checkFailedRun(out: string, left: string, r: { status: number | null; stderr: string }, whole: string, file: RegExp): void {
  expect(r.status).toBe(1)
  const lines = r.stderr.trim().split('\n')
  expect(lines).toHaveLength(1) // one message
  const ckpt = path.join(out, 'checkpoints', 'step-2')
  // the file (at its destination), the reason, the size of the whole save (model + AdamW m and v, f32)
  const m = new RegExp(`^plwtune train: cannot write ${out}/checkpoints/step-4/(\\S+): no space left on device \\(ENOSPC\\)\\. ` +
    'Saving checkpoint step-4 needs about [\\d.]+ KiB \\((\\d+) bytes of tensors\\) in \\S+, which has .* free now; the partly ' +
    `written files were removed\\. The last complete checkpoint, ${ckpt} \\(step 2\\), is intact: free some space, then ` +
    `--resume ${out} continues from it$`).exec(lines[0])
  expect({ stderr: lines[0], matched: m !== null }).toEqual({ stderr: lines[0], matched: true })
  expect(m![1]).toMatch(file)
  expect(Number(m![2])).toBe(3 * tensorBytes(path.join(whole, 'final', 'model.safetensors')))
  // nothing of the failed save is left; the checkpoint before it is whole
  expect(leftovers(left)).toEqual([])
  expect(fs.readdirSync(path.join(left, 'checkpoints'))).toEqual(['step-2'])
  expect(fs.readdirSync(path.join(left, 'checkpoints', 'step-2')).sort()).toEqual(fs.readdirSync(path.join(whole, 'checkpoints', 'step-6')).sort())
  for (const f of ['model.safetensors', 'optimizer.safetensors']) {
    expect(fs.statSync(path.join(left, 'checkpoints', 'step-2', f)).size).toBe(fs.statSync(path.join(whole, 'checkpoints', 'step-6', f)).size)
  }
}

/** A tiny Qwen3-style base model with the byte tokenizer's files, saved in `dir` (returned). */
async function tinyBaseModel(dir: string): Promise<string> {
  const tok = new ByteTokenizer()
  const m = await initModel(llamaConfig({ family: 'qwen3', vocabSize: tok.vocabSize, hiddenSize: 32, numLayers: 1, numHeads: 4,
    numKvHeads: 2, headDim: 8, intermediateSize: 48, maxPositions: 64 }), { seed: 2 })
  await m.save(dir)
  m.dispose()
  writeTokenizerFiles(dir, { byte: { specialTokens: tok.specialTokens, maxLength: 64 } })
  return dir
}

describe('a full disk in the middle of a checkpoint (CLI)', () => {
  const dir = tmp()
  const data = alpacaFile(dir)
  const whole = path.join(dir, 'whole')
  beforeAll(() => {
    expect(runCli(cliArgs(data, whole)).status).toBe(0)
  })

  test('the message names the file, ENOSPC and the size; no temporary files; step-2 loads; --resume gives the same final weights', async () => {
    const out = path.join(dir, 'simulated')
    // A checkpoint is ~290 KB: a budget of 1.5 of them ends in step-4's optimizer.safetensors (after the run's own files and step-2).
    const budget = Math.round(1.5 * bytesOf(path.join(whole, 'checkpoints', 'step-6')))
    const r = runCli(cliArgs(data, out), { PLWTUNE_TEST_WRITE_BUDGET: String(budget) })
    checkFailedRun(out, out, r, whole, /^optimizer\.safetensors$/)
    // metrics.jsonl holds whole lines only (steps 1-4), and step-2 loads with its optimizer state
    expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)).toEqual([1, 2, 3, 4])
    const { model, state } = await RunDir.loadCheckpoint(path.join(out, 'checkpoints', 'step-2'), { device: 'cpu' })
    expect(state.globalStep).toBe(2)
    expect(model.adamStep).toBe(2)
    model.dispose()

    const resumed = runCli(['train', '--resume', out])
    expect(resumed.stderr).toBe('')
    expect(resumed.status).toBe(0)
    expect(resumed.stdout).toMatch(/from step 2/)
    expect(same(path.join(out, 'final', 'model.safetensors'), path.join(whole, 'final', 'model.safetensors'))).toBe(true)
  })

  // A real full file system: a 512 KiB tmpfs in a mount namespace of the test's own (gone when it ends).
  const canMount = process.platform === 'linux' && (() => {
    const probe = tmp()
    return spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=64k plwprobe "$0"', probe], { stdio: 'ignore' }).status === 0
  })()
  ;(canMount ? test : test.skip)('the same on a real full file system (a 512 KiB tmpfs; skipped where a test cannot mount one)', () => {
    const mnt = tmp(), saved = tmp()
    const out = path.join(mnt, 'run')
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
    const node = (args: string[]) => [process.execPath, CLI, ...args].map(q).join(' ')
    const script = [
      `mount -t tmpfs -o size=512k plwfull ${q(mnt)} || exit 90`,
      `${node(cliArgs(data, out))} >/dev/null 2>${q(path.join(saved, 'fail.err'))}; echo $? >${q(path.join(saved, 'fail.rc'))}`,
      `find ${q(out)} >${q(path.join(saved, 'listing'))}`,
      `cp -r ${q(out)} ${q(path.join(saved, 'run'))}`,
      `mount -o remount,size=8m ${q(mnt)}`, // space freed: the resume goes on
      `${node(['train', '--resume', out])} >/dev/null 2>${q(path.join(saved, 'resume.err'))}; echo $? >${q(path.join(saved, 'resume.rc'))}`,
      `cp ${q(path.join(out, 'final', 'model.safetensors'))} ${q(path.join(saved, 'final.safetensors'))}`,
    ].join('\n')
    const r = spawnSync('unshare', ['-m', 'sh', '-c', script], { encoding: 'utf8' })
    expect(r.status).toBe(0)
    const stderr = fs.readFileSync(path.join(saved, 'fail.err'), 'utf8')
    // The real disk fills where the page-rounded files put the limit: step-4's model or optimizer file.
    checkFailedRun(out, path.join(saved, 'run'), { status: Number(fs.readFileSync(path.join(saved, 'fail.rc'), 'utf8')), stderr }, whole,
      /^(model|optimizer)\.safetensors$/)
    expect(fs.readFileSync(path.join(saved, 'resume.err'), 'utf8')).toBe('')
    expect(fs.readFileSync(path.join(saved, 'resume.rc'), 'utf8').trim()).toBe('0')
    expect(same(path.join(saved, 'final.safetensors'), path.join(whole, 'final', 'model.safetensors'))).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------
// in process: a full disk at any point of a run, full fine-tuning and LoRA

/**
 * Runs `config(out)` once to count the bytes it writes, then again with the disk full after
 * each budget: every failure must be a WriteError naming a file of the run with ENOSPC, leave
 * no temporary files and whole metrics lines, and a resume from the checkpoint left (or a new
 * start, when none was saved yet) must end with the uninterrupted run's final weights.
 * Returns the files the failures named, relative to the run.
 */
async function fillAtEveryPoint(config: (out: string, extra?: object) => ReturnType<typeof tinyTrainConfig>, budgets: (total: number) => number[],
  weights: string): Promise<string[]> {
  const whole = tmp()
  setWriteBudgetForTests(1e12)
  await new Trainer(config(whole)).fit()
  const total = 1e12 - setWriteBudgetForTests(null)!
  const named: string[] = []
  for (const budget of budgets(total)) {
    const out = tmp()
    setWriteBudgetForTests(budget)
    const err = await new Trainer(config(out)).fit().then(() => null, (e: unknown) => e)
    setWriteBudgetForTests(null)
    expect({ budget, failed: err instanceof WriteError }).toEqual({ budget, failed: true })
    const e = err as WriteError
    expect(e.code).toBe('ENOSPC')
    expect(e.file.startsWith(out + path.sep)).toBe(true)
    expect(e.message).toContain(`cannot write ${e.file}: no space left on device (ENOSPC)`)
    if (e.save) expect(e.message).toMatch(new RegExp(`needs about [\\d.]+ \\w+ \\(${e.save.bytes} bytes of tensors\\)`))
    named.push(path.relative(out, e.file))
    expect({ budget, left: leftovers(out) }).toEqual({ budget, left: [] })
    const metricsFile = path.join(out, 'metrics.jsonl')
    if (fs.existsSync(metricsFile)) expect(fs.readFileSync(metricsFile, 'utf8')).toMatch(/^(.*\n)*$/) // whole lines only
    const last = new RunDir(out).checkpoints().pop()
    if (last !== undefined) {
      expect(e.message).toContain(`The last complete checkpoint, ${last.dir} (step ${last.step}), is intact`)
      const { model, state } = await RunDir.loadCheckpoint(last.dir, { device: 'cpu' })
      expect(state.globalStep).toBe(last.step)
      model.dispose()
      await new Trainer(config(out, { resume: out })).fit()
    } else {
      expect(e.message).toContain('No checkpoint was saved yet')
      await new Trainer(config(out, { overwrite: true })).fit()
    }
    expect({ budget, same: same(path.join(out, 'final', weights), path.join(whole, 'final', weights)) }).toEqual({ budget, same: true })
  }
  return named
}

describe('a full disk at any point of a run (in process)', () => {
  test('full fine-tuning: checkpoints, best/, final/, metrics, plot, config — each failure clean, each resume bitwise', async () => {
    const config = (out: string, extra: object = {}) => tinyTrainConfig({ out, maxSteps: 6, saveEvery: 2, keepCheckpoints: 2,
      evalEvery: 2, generateEval: 2, maxNewTokens: 3, ...extra })
    const named = await fillAtEveryPoint(config, (total) => [100, 1500, ...Array.from({ length: 14 }, (_, i) => Math.round(total * (i + 1) / 15))],
      'model.safetensors')
    // the budgets reached the run's config, checkpoints (model and optimizer), best/ and final/
    const kinds = new Set(named.map((f) => f.replace(/step-\d+/, 'step-N')))
    for (const k of ['config.json', 'checkpoints/step-N/model.safetensors', 'checkpoints/step-N/optimizer.safetensors',
      'best/model.safetensors', 'final/model.safetensors']) {
      expect({ k, named: [...kinds].some((f) => f === k || f === '.plwtune-run' && k === 'config.json') }).toEqual({ k, named: true })
    }
  })

  test('LoRA: a checkpoint\'s adapter_model.safetensors and optimizer state, final/ — the same', async () => {
    const base = await tinyBaseModel(tmp())
    const config = (out: string, extra: object = {}) => tinyTrainConfig({ out, model: base, loraR: 4, loraAlpha: 8, maxSteps: 4,
      saveEvery: 2, keepCheckpoints: 1, evalEvery: 0, valSplit: 0, testSplit: 0, ...extra })
    const named = await fillAtEveryPoint(config, (total) => Array.from({ length: 6 }, (_, i) => Math.round(total * (i + 1) / 7)),
      'adapter_model.safetensors')
    expect(named.some((f) => /^checkpoints\/step-\d+\/adapter_model\.safetensors$/.test(f))).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------
// each writer by itself

describe('each writer, on a full disk', () => {
  const tensors = (n: number, seed: number) => Array.from({ length: n }, (_, i) => ({
    name: `layer.${i}.weight`, shape: [8, 8], read: () => Float32Array.from({ length: 64 }, (_, j) => seed + i + j / 64),
  }))
  const snapshot = (d: string) => Object.fromEntries(fs.readdirSync(d).sort().map((f) => [f, fs.readFileSync(path.join(d, f)).toString('hex')]))

  test('writeTensorDir (model.save): the previous weights stay, the temporary shards go, the error names the shard and the size', () => {
    const d = tmp()
    writeTensorDir(d, tensors(6, 1), { maxShardBytes: 600 }) // 3 shards of 2 tensors (256 bytes each)
    const before = snapshot(d)
    setWriteBudgetForTests(1000) // the second shard fails
    let err: unknown
    try { writeTensorDir(d, tensors(6, 2), { maxShardBytes: 600 }) } catch (e) { err = e }
    setWriteBudgetForTests(null)
    expect(err).toBeInstanceOf(WriteError)
    expect((err as WriteError).message).toBe(`cannot write ${d}/model-00002-of-00003.safetensors: no space left on device (ENOSPC). ` +
      `Saving the weights needs about 1.5 KiB (1536 bytes of tensors) in ${d}, which has ` +
      `${/which has (.*) free now/.exec((err as WriteError).message)![1]} free now; the partly written files were removed`)
    expect(snapshot(d)).toEqual(before)
    const dir = openTensorDir(d)
    expect(dir.read('layer.5.weight')[0]).toBe(6)
    dir.close()
  })

  test('a LoRA adapter (writeAdapterDir) and plwtune merge: the previous adapter stays; no merged directory, no temporary one', async () => {
    const root = tmp()
    const base = path.join(root, 'base'), adapter = path.join(root, 'adapter'), merged = path.join(root, 'merged')
    await tinyBaseModel(base)
    const lora = await loadModel(base, { lora: { r: 4, alpha: 8, dropout: 0, rslora: false, targets: ['q_proj', 'v_proj'], seed: 1 } })
    await lora.save(adapter)
    const before = snapshot(adapter)
    const adapterBytes = lora.adapterParameters().reduce((s, p) => s + 4 * p.shape.reduce((a, x) => a * x, 1), 0)
    setWriteBudgetForTests(500)
    const err = await lora.save(adapter).then(() => null, (e: unknown) => e)
    setWriteBudgetForTests(null)
    lora.dispose()
    expect(err).toBeInstanceOf(WriteError)
    expect((err as WriteError).message).toMatch(new RegExp(`^cannot write ${adapter}/adapter_model\\.safetensors: no space left on device ` +
      `\\(ENOSPC\\)\\. Saving the adapter needs about [\\d.]+ KiB \\(${adapterBytes} bytes of tensors\\) in ${adapter}, `))
    expect(snapshot(adapter)).toEqual(before)

    setWriteBudgetForTests(20000)
    const r = await capture(mergeCommand, ['--model', base, '--adapter', adapter, '--out', merged])
    setWriteBudgetForTests(null)
    expect(r.code).toBe(1)
    const baseBytes = tensorBytes(path.join(base, 'model.safetensors'))
    expect(r.err).toMatch(new RegExp(`\nplwtune merge: cannot write ${merged}/model\\.safetensors: no space left on device \\(ENOSPC\\)\\. ` +
      `Saving the merged model needs about [\\d.]+ KiB \\(${baseBytes} bytes of tensors\\) in ${root}, `))
    expect(fs.readdirSync(root).sort()).toEqual(['adapter', 'base'])
    expect((await capture(mergeCommand, ['--model', base, '--adapter', adapter, '--out', merged])).code).toBe(0)
  })

  test('metrics.jsonl: an append that fails is cut back, never half a line; a line cut by a crash is dropped on reading', () => {
    const d = tmp()
    const run = new RunDir(d)
    run.appendMetrics({ step: 1, loss: 2 })
    const before = fs.readFileSync(path.join(d, 'metrics.jsonl'), 'utf8')
    setWriteBudgetForTests(8)
    expect(() => run.appendMetrics({ step: 2, loss: 1.5 })).toThrow(`cannot write ${d}/metrics.jsonl: no space left on device (ENOSPC)`)
    setWriteBudgetForTests(null)
    expect(fs.readFileSync(path.join(d, 'metrics.jsonl'), 'utf8')).toBe(before)
    expect(leftovers(d)).toEqual([])
    fs.appendFileSync(path.join(d, 'metrics.jsonl'), '{"step": 2, "lo')
    expect(run.readMetrics()).toEqual([{ step: 1, loss: 2 }])
    fs.writeFileSync(path.join(d, 'metrics.jsonl'), '{"step": 1\n{"step": 2}\n')
    expect(() => run.readMetrics()).toThrow(`${d}/metrics.jsonl:1: not valid JSON`)
  })
})
