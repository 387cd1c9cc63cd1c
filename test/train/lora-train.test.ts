/**
 * LoRA runs end to end (CPU): `train --model BASE --lora-r …` writes PEFT adapter directories
 * (final/, best/, checkpoints/), leaves the base untouched, resumes bitwise; the adapter
 * loads by itself (its recorded base) or onto --model, a different base is refused, and
 * `plwtune merge` gives a plain model that generates what base + adapter generates.
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { resolveConfig, TrainConfig } from '../../ts/train/config'
import { Trainer, StepMetrics } from '../../ts/train/trainer'
import { initModel, loadModel } from '../../ts/model'
import { llamaConfig } from '../../ts/arch'
import { DEMO_TEMPLATE } from '../../ts/demo/tasks'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { writeTokenizerFiles } from '../../ts/train/tokenizer-files'
import { mergeCommand } from '../../ts/commands/merge'
import { capture } from '../commands/io'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-lora-'))
const metrics = (dir: string) => fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')
  .map((l) => JSON.parse(l) as StepMetrics)
const digest = (dir: string) => Object.fromEntries(fs.readdirSync(dir).sort()
  .map((f) => [f, crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, f))).digest('hex')]))

/** A base model directory: a tiny random Qwen3-shaped model with the byte tokenizer. */
async function baseDir(): Promise<string> {
  const dir = tmp()
  const tok = new ByteTokenizer()
  const model = await initModel(llamaConfig({ family: 'qwen3', vocabSize: tok.vocabSize, hiddenSize: 32, numLayers: 2, numHeads: 4,
    numKvHeads: 2, headDim: 8, intermediateSize: 48, maxPositions: 64, tieWordEmbeddings: true }), { seed: 2 })
  await model.save(dir)
  model.dispose()
  writeTokenizerFiles(dir, { byte: { specialTokens: tok.specialTokens, maxLength: 64 } })
  return dir
}

function config(values: Partial<TrainConfig>): TrainConfig {
  return resolveConfig({ source: 'test', values: {
    device: 'cpu', template: DEMO_TEMPLATE, demoRecords: 240, batchSize: 8, lr: 1e-2, warmupSteps: 2, valSplit: 0.1,
    testSplit: 0.1, evalEvery: 3, maxLength: 64, seed: 3, maxSteps: 6, loraR: 4, loraAlpha: 8, loraDropout: 0.1, ...values,
  } as Record<string, unknown> })
}

describe('LoRA training runs', () => {
  let base = ''
  let whole = ''
  beforeAll(async () => {
    base = await baseDir()
    whole = tmp()
    const before = digest(base)
    const r = await new Trainer(config({ model: base, out: whole })).fit()
    expect(r.stopReason).toBe('completed')
    expect(digest(base)).toEqual(before) // the base is read, never written
  })

  test('final/, best/ and checkpoints are PEFT adapter directories with the tokenizer', () => {
    for (const d of ['final', 'best', 'checkpoints/step-6']) {
      const dir = path.join(whole, d)
      for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'plwtune_base.json', 'tokenizer.json', 'plwtune.json']) {
        expect({ d, f, exists: fs.existsSync(path.join(dir, f)) }).toEqual({ d, f, exists: true })
      }
      expect({ d, full: fs.existsSync(path.join(dir, 'model.safetensors')) }).toEqual({ d, full: false })
    }
    const cfg = JSON.parse(fs.readFileSync(path.join(whole, 'final', 'adapter_config.json'), 'utf8'))
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0.1, bias: 'none',
      use_rslora: false, base_model_name_or_path: path.resolve(base) })
    expect([...cfg.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'])
    expect(fs.existsSync(path.join(whole, 'checkpoints', 'step-6', 'optimizer.safetensors'))).toBe(true)
  })

  test('an interrupted LoRA run (dropout on) resumes bitwise', async () => {
    const split = tmp()
    const controller = new AbortController()
    const t = new Trainer(config({ model: base, out: split }))
    t.on('step', (m: StepMetrics) => { if (m.step === 4) controller.abort() })
    expect((await t.fit({ signal: controller.signal })).stopReason).toBe('interrupted')
    await new Trainer(config({ model: base, out: split, resume: split })).fit()
    expect(metrics(split).map((m) => [m.step, m.loss, m.grad_norm, m.val_loss]))
      .toEqual(metrics(whole).map((m) => [m.step, m.loss, m.grad_norm, m.val_loss]))
    const file = (d: string) => fs.readFileSync(path.join(d, 'final', 'adapter_model.safetensors'))
    expect(file(split).equals(file(whole))).toBe(true)
  })

  test('the adapter loads by itself or onto --model; merge gives a plain model that generates the same', async () => {
    const final = path.join(whole, 'final')
    const prompt = Array.from(Buffer.from('Reverse: abc\nAnswer:'))
    const byItself = await loadModel(final)
    const onto = await loadModel(base, { adapter: final })
    const want = await byItself.generate(prompt, { maxNewTokens: 8 })
    expect(await onto.generate(prompt, { maxNewTokens: 8 })).toEqual(want)
    const plain = await loadModel(base)
    const merged = tmp()
    fs.rmSync(merged, { recursive: true })
    const r = await capture(mergeCommand, ['--model', base, '--adapter', final, '--out', merged])
    expect(r.err).not.toMatch(/error/)
    expect(r.code).toBe(0)
    expect(fs.existsSync(path.join(merged, 'model.safetensors')) && fs.existsSync(path.join(merged, 'tokenizer.json'))).toBe(true)
    const m = await loadModel(merged)
    expect(m.lora).toBeNull()
    expect(await m.generate(prompt, { maxNewTokens: 8 })).toEqual(want)
    // the adapters changed the model: the merged weights are not the base's
    expect(m.read('model.layers.0.self_attn.q_proj.weight')).not.toEqual(plain.read('model.layers.0.self_attn.q_proj.weight'))
    for (const x of [byItself, onto, plain, m]) x.dispose()
    expect((await capture(mergeCommand, ['--model', base, '--adapter', final, '--out', merged])).err).toMatch(/exists/)
  })

  test('an adapter on a base other than its own is refused, naming both', async () => {
    const other = tmp()
    for (const f of fs.readdirSync(base)) fs.copyFileSync(path.join(base, f), path.join(other, f))
    const cfg = JSON.parse(fs.readFileSync(path.join(other, 'config.json'), 'utf8'))
    fs.writeFileSync(path.join(other, 'config.json'), JSON.stringify({ ...cfg, rms_norm_eps: 1e-5 }))
    await expect(loadModel(other, { adapter: path.join(whole, 'final') })).rejects.toThrow(new RegExp(`${path.resolve(base)}[\\s\\S]*config`))
  })

  test('LoRA without a base model is a config error', () => {
    expect(() => config({ out: tmp() })).toThrow(/LoRA trains adapters on a base model/)
  })
})
