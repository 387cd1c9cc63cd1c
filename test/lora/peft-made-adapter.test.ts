/**
 * Adapters made by PEFT itself load in plwtune and give PEFT's logits. The fixtures in
 * test/fixtures/peft/ were written once by scripts/gpu/peft_adapter_check.py
 * --write-peft-adapter (PEFT 0.21.0, transformers 5.18, torch 2.13, CPU float32) on two tiny
 * bases saved by plwtune: a Qwen2-style model (q/k/v biases, untied head, GQA) and a GPT-2
 * (Conv1D weights: PEFT's fan_in_fan_out). Each adapter covers every linear layer with
 * init_lora_weights=False (B not zero), and expected_logits.json holds PeftModel's logits.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { loadModel } from '../../ts/model'

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'peft')

describe.each(['qwen2', 'gpt2'])('a PEFT-made LoRA adapter (%s)', (name) => {
  const base = path.join(FIXTURES, `${name}-base`)
  const adapter = path.join(FIXTURES, `${name}-peft-adapter`)
  const expected = JSON.parse(fs.readFileSync(path.join(adapter, 'expected_logits.json'), 'utf8')) as
    { tokens: number[][]; shape: number[]; logits: number[] }
  const [B, T] = expected.shape
  const batch = { B, T, tokens: Int32Array.from(expected.tokens.flat()), targets: new Int32Array(B * T), weights: new Float32Array(B * T) }
  const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let worst = 0
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]))
    return worst
  }

  test('loads onto its base and gives PeftModel\'s logits', async () => {
    const model = await loadModel(base, { adapter, maxBatch: B, maxSeqLen: T })
    expect(model.lora).toMatchObject({ r: 4, alpha: 8, dropout: 0, rslora: false })
    const logits = await model.logits(batch)
    // f32 both: the same math in another summation order; logits are of size ~5
    expect(maxAbsDiff(logits, expected.logits)).toBeLessThan(1e-4)
    const plain = await loadModel(base, { maxBatch: B, maxSeqLen: T })
    expect(maxAbsDiff(await plain.logits(batch), expected.logits)).toBeGreaterThan(1e-2) // the adapter matters
    model.dispose()
    plain.dispose()
  })

  test('merged into its base, gives the same logits', async () => {
    const model = await loadModel(base, { adapter })
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-peft-merge-'))
    await model.saveMerged(out)
    model.dispose()
    const merged = await loadModel(out, { maxBatch: B, maxSeqLen: T })
    expect(merged.lora).toBeNull()
    expect(maxAbsDiff(await merged.logits(batch), expected.logits)).toBeLessThan(1e-4)
    merged.dispose()
  })
})
