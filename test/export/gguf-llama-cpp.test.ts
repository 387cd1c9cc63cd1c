/**
 * The real check of `plwtune export gguf`: tiny models of every architecture plwtune trains
 * (GPT-2; Llama with "llama3" RoPE scaling, GQA, an untied head and attention/MLP biases;
 * Mistral (llama in GGUF) with one KV head; Qwen2 with q/k/v biases; Qwen3 with q/k norms and
 * head_dim ≠ hidden/heads), trained here for a few steps, exported
 * and run in node-llama-cpp 3.21.1 (llama.cpp, a client we did not write). At f32 its greedy
 * continuation of every prompt is plwtune's own `model.generate` (greedy), token for token
 * (node-llama-cpp stops at the end-of-generation token, so plwtune's is cut there too); f16,
 * bf16 and q8_0 files load and agree on the first tokens. The byte tokenizer's vocabulary
 * tokenizes and detokenizes in llama.cpp exactly as plwtune's ByteTokenizer does.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { ModelConfig, llamaConfig } from '../../ts/arch'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { Model } from '../../ts/model'
import { exportGguf } from '../../ts/export/export-gguf'
import { GgufDtype } from '../../ts/export/gguf-writer'
import { LlamaJob, runLlama, trainedDir, untilEog } from './helpers'

jest.setTimeout(180_000)

const MODELS: Record<string, ModelConfig> = {
  gpt2: { arch: 'gpt2', nLayer: 2, nHead: 2, nEmbd: 64, nPositions: 64, vocabSize: 257 },
  llama: llamaConfig({ vocabSize: 257, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 64,
    tieWordEmbeddings: false, ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 },
    qkvBias: true, oBias: true, mlpBias: true }),
  mistral: llamaConfig({ family: 'mistral', vocabSize: 257, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 1, maxPositions: 64,
    slidingWindow: 4096 }),
  qwen2: llamaConfig({ family: 'qwen2', vocabSize: 257, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 64 }),
  qwen3: llamaConfig({ family: 'qwen3', vocabSize: 257, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 32,
    maxPositions: 64 }),
}

/** Four trained questions (confident answers), then two texts the models were not trained on (less confident). */
const PROMPTS = ['Q: red\nA:', 'Q: blue\nA:', 'Q: pink\nA:', 'Q: white\nA:', 'Q: gr', 'hello wor']
const TRAINED = 4
const TEXTS = ['Q: red\nA: apple END', 'naïve café — 猫 🙂', ' two  spaces\n\ttab']
const MAX = 16
const FIRST = 4
const tok = new ByteTokenizer()
const prompts = PROMPTS.map((p) => tok.encode(p))

interface Case { name: string; dir: string; ours: number[][]; files: Record<GgufDtype, string> }
const cases: Case[] = []
let runs: ReturnType<typeof runLlama> = []
const jobs: LlamaJob[] = []
const dtypes: GgufDtype[] = ['f32', 'f16', 'bf16', 'q8_0']

const out = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-gguf-'))

beforeAll(async () => {
  for (const [name, config] of Object.entries(MODELS)) {
    const { dir, model } = await trainedDir(config, { steps: 80 })
    const ours: number[][] = []
    try {
      for (const p of prompts) ours.push((await (model as Model).generate(p, { maxNewTokens: MAX })).tokens)
    } finally {
      model.dispose()
    }
    const files = {} as Record<GgufDtype, string>
    for (const dtype of dtypes) {
      files[dtype] = path.join(out, `${name}-${dtype}.gguf`)
      await exportGguf({ model: dir, out: files[dtype], dtype })
      jobs.push({ file: files[dtype], prompts, maxTokens: MAX, texts: dtype === 'f32' ? TEXTS : [] })
    }
    cases.push({ name, dir, ours, files })
  }
  runs = runLlama(jobs)
})

describe.each(Object.keys(MODELS))('%s', (name) => {
  const at = (dtype: GgufDtype) => runs[jobs.findIndex((j) => j.file === cases.find((c) => c.name === name)!.files[dtype])]

  test('f32: node-llama-cpp greedy = plwtune generate, token for token', () => {
    const c = cases.find((x) => x.name === name)!
    const r = at('f32')
    expect(r.info.architecture).toBe(name === 'mistral' ? 'llama' : name)
    expect(r.info.eos).toBe(tok.eosId)
    expect(r.info.trainContextSize).toBe(64)
    let compared = 0
    for (let i = 0; i < prompts.length; i++) {
      const want = untilEog(c.ours[i], [tok.eosId], MAX)
      expect({ prompt: PROMPTS[i], tokens: r.continuations[i] }).toEqual({ prompt: PROMPTS[i], tokens: want })
      compared += want.length
    }
    // the comparison is of real answers, not of empty strings (the trained models begin the fact)
    expect(tok.decode(r.continuations[0])).toMatch(/^ ap/)
    expect(compared).toBeGreaterThan(40)
  })

  test('f32: the byte vocabulary tokenizes and detokenizes as ByteTokenizer', () => {
    const r = at('f32')
    expect(r.tokenized).toEqual(TEXTS.map((t) => tok.encode(t)))
    expect(r.detokenized).toEqual(TEXTS)
  })

  test.each(['f16', 'bf16', 'q8_0'] as const)('%s loads and agrees on the first tokens', (dtype) => {
    const c = cases.find((x) => x.name === name)!
    const r = at(dtype)
    // Rounding the weights moves the logits a little: the trained answers (confident) must agree on
    // their first tokens; on the untrained prompts a near-tie may go either way, so those are only reported.
    for (let i = 0; i < TRAINED; i++) expect(r.continuations[i].slice(0, FIRST)).toEqual(untilEog(c.ours[i], [tok.eosId], FIRST))
    if (process.env.PLW_GGUF_REPORT) {
      const agree = prompts.map((_, i) => {
        const want = untilEog(c.ours[i], [tok.eosId], MAX)
        let k = 0
        while (k < want.length && r.continuations[i][k] === want[k]) k++
        return `${k}/${want.length}`
      })
      fs.appendFileSync(process.env.PLW_GGUF_REPORT, `${name} ${dtype}: common prefix per prompt ${agree.join(' ')}\n`)
    }
  })
})

afterAll(() => {
  for (const c of cases) fs.rmSync(c.dir, { recursive: true, force: true })
  fs.rmSync(out, { recursive: true, force: true })
})
