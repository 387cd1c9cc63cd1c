/**
 * The trainer end to end on tiny models (CPU): exact resume, gradient accumulation, a
 * non-finite loss, learning, and the run directory's contents.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Trainer, StepMetrics } from '../../ts/train/trainer'
import { RunDir } from '../../ts/train/run-dir'
import { initModel } from '../../ts/model'
import { openSafetensors } from '../../ts/safetensors'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { writeTokenizerFiles } from '../../ts/train/tokenizer-files'
import { relError } from '../support/reference'
import { tinyTrainConfig as config } from '../support/train-config'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-train-'))

const metrics = (dir: string) => fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')
  .map((l) => JSON.parse(l) as StepMetrics)

describe('Trainer', () => {
  test('an interrupted run resumed from its checkpoint gives bitwise the losses of an uninterrupted one', async () => {
    const whole = tmp(), split = tmp()
    const a = await new Trainer(config({ out: whole, maxSteps: 8 })).fit()
    expect(a.stopReason).toBe('completed')

    const controller = new AbortController()
    const t = new Trainer(config({ out: split, maxSteps: 8 }))
    t.on('step', (m: StepMetrics) => { if (m.step === 5) controller.abort() })
    const b = await t.fit({ signal: controller.signal })
    expect(b.stopReason).toBe('interrupted')
    expect(b.steps).toBe(5)
    expect(fs.existsSync(path.join(split, 'checkpoints', 'step-5', 'trainer_state.json'))).toBe(true)
    expect(fs.existsSync(path.join(split, 'final'))).toBe(false)

    const resumed = await new Trainer(config({ out: split, maxSteps: 8, resume: split })).fit()
    expect(resumed.stopReason).toBe('completed')
    const ma = metrics(whole), mb = metrics(split)
    expect(mb.map((m) => m.step)).toEqual(ma.map((m) => m.step))
    expect(mb.map((m) => [m.loss, m.grad_norm, m.lr, m.val_loss])).toEqual(ma.map((m) => [m.loss, m.grad_norm, m.lr, m.val_loss]))
    const fa = fs.readFileSync(path.join(whole, 'final', 'model.safetensors'))
    expect(fs.readFileSync(path.join(split, 'final', 'model.safetensors')).equals(fa)).toBe(true)
  })

  test('a fresh Llama-family model (--init-arch qwen3, GQA) resumes bitwise and saves a bf16 final on request', async () => {
    const whole = tmp(), split = tmp()
    const llama = { initArch: 'qwen3' as const, init: { nLayer: 2, nHead: 4, nKvHead: 2, nEmbd: 16, nPositions: 64 }, maxSteps: 6,
      saveDtype: 'bfloat16' as const }
    const a = await new Trainer(config({ ...llama, out: whole })).fit()
    expect(a.stopReason).toBe('completed')
    const controller = new AbortController()
    const t = new Trainer(config({ ...llama, out: split }))
    t.on('step', (m: StepMetrics) => { if (m.step === 3) controller.abort() })
    expect((await t.fit({ signal: controller.signal })).stopReason).toBe('interrupted')
    // the checkpoint holds the f32 masters whatever saveDtype says: that is what makes the resume exact
    expect(openSafetensors(path.join(split, 'checkpoints', 'step-3', 'model.safetensors')).tensors.get('model.norm.weight')!.dtype).toBe('F32')
    await new Trainer(config({ ...llama, out: split, resume: split })).fit()
    expect(metrics(split).map((m) => [m.loss, m.grad_norm])).toEqual(metrics(whole).map((m) => [m.loss, m.grad_norm]))
    const final = JSON.parse(fs.readFileSync(path.join(whole, 'final', 'config.json'), 'utf8'))
    expect(final).toMatchObject({ architectures: ['Qwen3ForCausalLM'], num_key_value_heads: 2, torch_dtype: 'bfloat16' })
    const st = openSafetensors(path.join(whole, 'final', 'model.safetensors'))
    expect(st.tensors.get('model.layers.1.self_attn.q_norm.weight')!.dtype).toBe('BF16')
    st.close()
  })

  test('one step of 8 examples in micro-batches of 4 equals micro-batches of 8', async () => {
    const d1 = tmp(), d2 = tmp()
    await new Trainer(config({ out: d1, maxSteps: 1, microBatchSize: 8 })).fit()
    await new Trainer(config({ out: d2, maxSteps: 1, microBatchSize: 4 })).fit()
    expect(metrics(d2)[0].loss).toBeCloseTo(metrics(d1)[0].loss, 6)
    expect(metrics(d2)[0].grad_norm).toBeCloseTo(metrics(d1)[0].grad_norm, 5)
    const w = (d: string) => openSafetensors(path.join(d, 'final', 'model.safetensors')).read('transformer.h.0.mlp.c_fc.weight')
    expect(relError(w(d2), w(d1))).toBeLessThan(1e-5)
  })

  test('learns: the training loss falls by more than 40% in 60 steps', async () => {
    const out = tmp()
    const r = await new Trainer(config({ out, maxSteps: 60, evalEvery: 20, lr: 1e-2, init: { nLayer: 2, nHead: 2, nEmbd: 32, nPositions: 64 } })).fit()
    const m = metrics(out)
    const first = m.slice(0, 3).reduce((s, x) => s + x.loss, 0) / 3
    const last = m.slice(-3).reduce((s, x) => s + x.loss, 0) / 3
    expect(last).toBeLessThan(0.6 * first)
    expect(r.bestValCompletionLoss).not.toBeNull()
    // The run directory holds what the docs promise.
    for (const f of ['config.json', 'metrics.jsonl', 'loss.svg', 'final/config.json', 'final/model.safetensors',
      'final/tokenizer.json', 'final/tokenizer_config.json', 'best/model.safetensors']) {
      expect({ f, exists: fs.existsSync(path.join(out, f)) }).toEqual({ f, exists: true })
    }
    expect(m[0]).toEqual(expect.objectContaining({ step: 1, loss: expect.any(Number), completion_loss: expect.any(Number),
      prompt_loss: expect.any(Number), lr: expect.any(Number), tokens: expect.any(Number) }))
    expect(fs.readFileSync(path.join(out, 'loss.svg'), 'utf8')).toContain('val completion loss')
  })

  test('a NaN loss stops the run with the step and keeps no corrupted model', async () => {
    const modelDir = tmp()
    const tok = new ByteTokenizer()
    const m = await initModel({ nLayer: 1, nHead: 2, nEmbd: 16, nPositions: 64, vocabSize: tok.vocabSize }, { seed: 1 })
    const w = m.read('h.0.ln_1.weight'); w[3] = NaN
    m.write('h.0.ln_1.weight', w)
    await m.save(modelDir)
    writeTokenizerFiles(modelDir, { byte: { specialTokens: tok.specialTokens, maxLength: 64 } })
    m.dispose()
    const out = tmp()
    // data: the demo set through a file, so --model and --data are both real (beside the run, not in it).
    const data = path.join(tmp(), 'data.jsonl')
    fs.writeFileSync(data, Array.from({ length: 40 }, (_, i) => JSON.stringify({ instruction: 'Add.', input: `${i} + 1`, output: `${i + 1}` })).join('\n'))
    const r = await new Trainer(config({ out, model: modelDir, data, maxSteps: 5 })).fit()
    expect(r.stopReason).toBe('non_finite')
    expect(r.message).toMatch(/the loss became NaN at step 1/)
    expect(r.finalDir).toBeNull()
  })

  test('the byte tokenizer is exported as a real Hugging Face tokenizer.json', async () => {
    const { HfTokenizer } = await import('../../ts/data/hf-tokenizer')
    const dir = tmp()
    const tok = new ByteTokenizer()
    writeTokenizerFiles(dir, { byte: { specialTokens: tok.specialTokens, maxLength: 64 } })
    const hf = await HfTokenizer.fromDir(dir)
    for (const text of ['Add 2 + 3', 'héllo wörld\n\t!', 'x<|endoftext|>y']) expect(hf.encode(text)).toEqual(tok.encode(text))
    expect(hf.eosId).toBe(tok.eosId)
    expect(hf.vocabSize).toBe(tok.vocabSize)
  })
})

describe('the run directory rules', () => {
  const listing = (d: string) => fs.readdirSync(d, { recursive: true }).map(String).sort()

  test('a directory of the user\'s files is refused, untouched, even with --overwrite', async () => {
    const out = tmp()
    fs.writeFileSync(path.join(out, 'config.json'), '{"mine": true}')
    fs.mkdirSync(path.join(out, 'final'))
    fs.writeFileSync(path.join(out, 'final', 'README.md'), 'notes')
    fs.writeFileSync(path.join(out, 'loss.svg'), '<svg/>')
    const before = listing(out)
    for (const overwrite of [false, true]) {
      await expect(new Trainer(config({ out, maxSteps: 2, overwrite })).fit()).rejects.toThrow(/holds files that are not a plwtune run \(config\.json, final, loss\.svg\)/)
    }
    expect(listing(out)).toEqual(before)
    expect(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).toBe('{"mine": true}')
  })

  test('a finished run is not mixed with a new one: refused, or replaced with --overwrite', async () => {
    const out = tmp()
    await new Trainer(config({ out, maxSteps: 4, saveEvery: 2 })).fit()
    const before = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
    await expect(new Trainer(config({ out, maxSteps: 3 })).fit()).rejects.toThrow(`--out ${out} holds a plwtune run (finished); a new run there would mix the two: --resume ${out} continues it, --overwrite replaces it`)
    expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toBe(before)
    await new Trainer(config({ out, maxSteps: 3, overwrite: true })).fit()
    expect(metrics(out).map((m) => m.step)).toEqual([1, 2, 3])
    expect(fs.readdirSync(path.join(out, 'checkpoints'))).toEqual(['step-3'])
  })

  test('a resume continues its own run with its own settings, whatever asks for it', async () => {
    const out = tmp()
    await new Trainer(config({ out, maxSteps: 2 })).fit()
    await expect(new Trainer(config({ out: tmp(), resume: out, maxSteps: 2 })).fit()).rejects.toThrow(/continues in its own directory/)
    await expect(new Trainer(config({ out, resume: out, maxSteps: 2, lr: 1 })).fit()).rejects.toThrow(/the run was started with other settings \(lr: 0\.003 there, 1 now\)/)
  })
})

describe('faults around checkpoints', () => {
  test('leftovers of killed saves and prunes are removed at the next start; a damaged trainer_state.json is named', async () => {
    const out = tmp()
    const controller = new AbortController()
    const t = new Trainer(config({ out, maxSteps: 8, saveEvery: 2 }))
    t.on('step', (m: StepMetrics) => { if (m.step === 4) controller.abort() })
    await t.fit({ signal: controller.signal })
    // what a kill -9 leaves: a temp dir of a save, a replaced final, a checkpoint half pruned (pid 2^22+1: not running)
    const dead = 4194305
    fs.mkdirSync(path.join(out, 'checkpoints', `.step-6.${dead}.tmp`))
    fs.mkdirSync(path.join(out, `final.old-${dead}`))
    fs.mkdirSync(path.join(out, 'checkpoints', `.step-2.deleting-${dead}`))
    fs.writeFileSync(path.join(out, 'checkpoints', `.step-2.deleting-${dead}`, 'trainer_state.json'), '{}')
    const logs: string[] = []
    const r = new Trainer(config({ out, maxSteps: 8, saveEvery: 2, resume: out }))
    r.on('log', (l: string) => logs.push(l))
    await r.fit()
    expect(logs.filter((l) => l.startsWith('removed'))).toHaveLength(3)
    expect(fs.readdirSync(path.join(out, 'checkpoints')).sort()).toEqual(['step-6', 'step-8'])
    expect(fs.readdirSync(out).filter((n) => n.includes('.old-') || n.endsWith('.tmp'))).toEqual([])
    // a cut-short trainer_state.json: the resume names the file instead of a bare JSON error
    const state = path.join(out, 'checkpoints', 'step-8', 'trainer_state.json')
    fs.writeFileSync(state, '{"globalStep": 8, "posi')
    await expect(new Trainer(config({ out, maxSteps: 8, saveEvery: 2, resume: out })).fit())
      .rejects.toThrow(`${state}: the trainer state is not valid JSON`)
  })
})

test('a resume refuses a data file changed since the run started, unless allowDataChange', async () => {
  const out = tmp()
  const data = path.join(tmp(), 'data.jsonl')
  const write = (n: number) => fs.writeFileSync(data, Array.from({ length: n }, (_, i) =>
    JSON.stringify({ instruction: 'Add one.', input: `${i}`, output: `${i + 1}` })).join('\n'))
  write(60)
  const controller = new AbortController()
  const t = new Trainer(config({ out, data, maxSteps: 6, testSplit: 0 }))
  t.on('step', (m: StepMetrics) => { if (m.step === 3) controller.abort() })
  await t.fit({ signal: controller.signal })
  expect(Object.keys(JSON.parse(fs.readFileSync(path.join(out, 'data-files.json'), 'utf8')))).toEqual([data])
  write(61)
  await expect(new Trainer(config({ out, data, maxSteps: 6, testSplit: 0, resume: out })).fit())
    .rejects.toThrow(new RegExp(`${data} changed \\(\\d+ bytes, was \\d+\\) since the run started.*--allow-data-change`))
  const logs: string[] = []
  const r = new Trainer(config({ out, data, maxSteps: 6, testSplit: 0, resume: out, allowDataChange: true }))
  r.on('log', (l: string) => logs.push(l))
  expect((await r.fit()).stopReason).toBe('completed')
  expect(logs.some((l) => l.startsWith(`warning: ${data} changed`))).toBe(true)
})

test('the run\'s start (its marker) is kept across a resume: a chat template\'s strftime_now renders it', async () => {
  const out = tmp()
  const controller = new AbortController()
  const t = new Trainer(config({ out, maxSteps: 4 }))
  t.on('step', (m: StepMetrics) => { if (m.step === 2) controller.abort() })
  const before = Date.now()
  await t.fit({ signal: controller.signal })
  const created = new RunDir(out).createdAt()
  expect(created).not.toBeNull()
  expect(created!.getTime()).toBeGreaterThanOrEqual(before - 1000)
  await new Trainer(config({ out, maxSteps: 4, resume: out })).fit()
  expect(new RunDir(out).createdAt()).toEqual(created)
  fs.writeFileSync(path.join(out, '.plwtune-run'), '{"plwtune": "run"}')
  expect(new RunDir(out).createdAt()).toBeNull() // a marker without the time: the resume renders today's date
})
