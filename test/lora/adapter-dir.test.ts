/**
 * LoRA's files: PEFT adapter directories written and read back (checked with a safetensors
 * reader written here, byte by byte, and against adapter_config.json as peft 0.21 writes it),
 * adapters shaped as PEFT itself saves them, every refusal, the base fingerprint, the merge
 * against a naive triple loop, and the settings helpers.
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { ModelConfig, llamaConfig } from '../../ts/arch'
import { writeSafetensors } from '../../ts/safetensors'
import { writeTensorDir } from '../../ts/tensor-dir'
import {
  ADAPTER_CONFIG, ADAPTER_WEIGHTS, BASE_FINGERPRINT, adapterTensors, isAdapterDir, readAdapterDir, writeAdapterDir,
} from '../../ts/lora/adapter-dir'
import { BaseFingerprint, baseFingerprint, checkBase } from '../../ts/lora/fingerprint'
import { mergeDelta } from '../../ts/lora/merge'
import { LINEAR_MODULES, LoraSettings, loraScaling, resolveLoraTargets, validateLoraSettings } from '../../ts/lora/settings'
import { bf16Round, rng } from '../support/reference'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-lora-'))

// A tiny Llama (GQA: 4 query heads of 4, 2 KV heads; MLP 24) and a tiny GPT-2 (8 channels, MLP 32).
const LLAMA: ModelConfig = llamaConfig({ vocabSize: 50, hiddenSize: 16, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 4,
  intermediateSize: 24, maxPositions: 64 })
const GPT2: ModelConfig = { arch: 'gpt2', nLayer: 2, nHead: 2, nEmbd: 8, nPositions: 12, vocabSize: 13 }

/** adapter_config.json as peft 0.21 writes it for r 4, alpha 8, dropout 0.05 on every Llama linear layer (targets sorted here). */
const PEFT_LLAMA_CONFIG = (base: string): string => `{
  "alora_invocation_tokens": null,
  "alpha_pattern": {},
  "arrow_config": null,
  "auto_mapping": null,
  "base_model_name_or_path": ${JSON.stringify(base)},
  "bias": "none",
  "corda_config": null,
  "ensure_weight_tying": false,
  "eva_config": null,
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "kasa_config": null,
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 8,
  "lora_bias": false,
  "lora_dropout": 0.05,
  "lora_ga_config": null,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "monteclora_config": null,
  "peft_type": "LORA",
  "peft_version": "0.21.0",
  "qalora_group_size": 16,
  "r": 4,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "down_proj",
    "gate_proj",
    "k_proj",
    "o_proj",
    "q_proj",
    "up_proj",
    "v_proj"
  ],
  "target_parameters": null,
  "task_type": "CAUSAL_LM",
  "trainable_token_indices": null,
  "use_bdlora": null,
  "use_dora": false,
  "use_qalora": false,
  "use_rslora": false,
  "velora_config": null
}`

// ---------------------------------------------------------------------------------------------
// An independent safetensors reader and writer (F32 and BF16 only)

interface RawTensor { dtype: string; shape: number[]; offsets: [number, number]; data: Float32Array }

function readRaw(file: string): { order: string[]; metadata: unknown; tensors: Map<string, RawTensor> } {
  const bytes = fs.readFileSync(file)
  const n = Number(bytes.readBigUInt64LE(0))
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>
  expect((8 + n) % 8).toBe(0) // padded header, as safetensors writes it
  const start = 8 + n
  const tensors = new Map<string, RawTensor>()
  const order: string[] = []
  let end = 0
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue
    const { dtype, shape, data_offsets: offsets } = v as { dtype: string; shape: number[]; data_offsets: [number, number] }
    const numel = shape.reduce((a, d) => a * d, 1)
    const data = new Float32Array(numel)
    for (let i = 0; i < numel; i++) {
      if (dtype === 'F32') data[i] = bytes.readFloatLE(start + offsets[0] + 4 * i)
      else if (dtype === 'BF16') data[i] = new Float32Array(new Uint32Array([bytes.readUInt16LE(start + offsets[0] + 2 * i) << 16]).buffer)[0]
      else throw new Error(`test reader: dtype ${dtype}`)
    }
    expect(offsets[1] - offsets[0]).toBe(numel * (dtype === 'F32' ? 4 : 2))
    tensors.set(name, { dtype, shape, offsets, data })
    order.push(name)
    end = Math.max(end, offsets[1])
  }
  expect(start + end).toBe(bytes.length)
  return { order, metadata: header.__metadata__, tensors }
}

/** F32 tensors in the order given (unlike the real writer: the reader must not depend on order). */
function writeRaw(file: string, tensors: Array<{ name: string; shape: number[]; data: Float32Array }>): void {
  let offset = 0
  const entries: string[] = ['"__metadata__":{"format":"pt"}']
  for (const t of tensors) {
    entries.push(`${JSON.stringify(t.name)}:{"dtype":"F32","shape":[${t.shape}],"data_offsets":[${offset},${offset + 4 * t.data.length}]}`)
    offset += 4 * t.data.length
  }
  let json = `{${entries.join(',')}}`
  json += ' '.repeat((8 - (json.length % 8)) % 8)
  const out = Buffer.alloc(8 + json.length + offset)
  out.writeBigUInt64LE(BigInt(json.length))
  out.write(json, 8)
  let at = 8 + json.length
  for (const t of tensors) for (const x of t.data) { out.writeFloatLE(x, at); at += 4 }
  fs.writeFileSync(file, out)
}

// ---------------------------------------------------------------------------------------------
// fixtures

/** Seeded adapter values in [-1, 1) for `config` and `settings`, by engine name. */
function knownTensors(config: ModelConfig, settings: LoraSettings): Map<string, { shape: number[]; data: Float32Array }> {
  const rand = rng(7)
  return new Map(adapterTensors(config, settings).map((t) => {
    const data = new Float32Array(t.shape[0] * t.shape[1])
    for (let i = 0; i < data.length; i++) data[i] = Math.fround((rand() - 0.5) * 2)
    return [t.name, { shape: t.shape, data }]
  }))
}

/** A base model directory for the fingerprint: config.json + model.safetensors (contents arbitrary). */
function fakeBase(dir: string, config: Record<string, unknown> = { architectures: ['LlamaForCausalLM'], hidden_size: 16 },
  names = ['model.norm.weight', 'model.embed_tokens.weight']): string {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2))
  writeSafetensors(path.join(dir, 'model.safetensors'), names.map((name, i) => ({ name, shape: [2, 4], data: new Float32Array(8).fill(i) })))
  return dir
}

function write(dir: string, config: ModelConfig, settings: LoraSettings, o: { base?: BaseFingerprint; dtype?: 'F32' | 'BF16'; baseModel?: string } = {}) {
  const tensors = knownTensors(config, settings)
  writeAdapterDir(dir, {
    arch: config.arch, config, settings, baseModel: o.baseModel ?? '/models/base', base: o.base, dtype: o.dtype,
    tensors: [...tensors].map(([name, t]) => ({ name, shape: t.shape })), read: (name) => tensors.get(name)!.data,
  })
  return tensors
}

const LLAMA_SETTINGS: LoraSettings = { r: 4, alpha: 8, dropout: 0.05, targets: LINEAR_MODULES.llama, rslora: false }
const GPT2_SETTINGS: LoraSettings = { r: 2, alpha: 16, dropout: 0, targets: ['c_attn', 'c_proj'], rslora: true }

// ---------------------------------------------------------------------------------------------

describe('writeAdapterDir', () => {
  test('Llama: PEFT key names, shapes, f32 data, sorted, {"format":"pt"}; adapter_config.json byte-identical to PEFT\'s', () => {
    const dir = tmp()
    const base = fakeBase(path.join(dir, 'base'))
    const fp = baseFingerprint(base)
    const out = path.join(dir, 'adapter')
    const tensors = write(out, LLAMA, LLAMA_SETTINGS, { base: fp, baseModel: base })
    expect(fs.readdirSync(out).sort()).toEqual([ADAPTER_CONFIG, ADAPTER_WEIGHTS, BASE_FINGERPRINT]) // no temporary files left

    const raw = readRaw(path.join(out, ADAPTER_WEIGHTS))
    expect(raw.metadata).toEqual({ format: 'pt' })
    const expected: Record<string, number[]> = {}
    const C = 16, Q = 16, KV = 8, F = 24, r = 4
    const dims: Record<string, [string, number, number]> = {
      q_proj: ['self_attn', C, Q], k_proj: ['self_attn', C, KV], v_proj: ['self_attn', C, KV], o_proj: ['self_attn', Q, C],
      gate_proj: ['mlp', C, F], up_proj: ['mlp', C, F], down_proj: ['mlp', F, C],
    }
    for (let l = 0; l < 2; l++) {
      for (const [leaf, [block, inF, outF]] of Object.entries(dims)) {
        expected[`base_model.model.model.layers.${l}.${block}.${leaf}.lora_A.weight`] = [r, inF]
        expected[`base_model.model.model.layers.${l}.${block}.${leaf}.lora_B.weight`] = [outF, r]
      }
    }
    expect(raw.order).toEqual(Object.keys(expected).sort())
    for (const [key, shape] of Object.entries(expected)) {
      const t = raw.tensors.get(key)!
      expect([key, t.dtype, t.shape]).toEqual([key, 'F32', shape])
      expect(t.data).toEqual(tensors.get(key.slice('base_model.model.'.length))!.data)
    }
    // Offsets tile the data area in key order.
    let at = 0
    for (const key of raw.order) {
      expect(raw.tensors.get(key)!.offsets[0]).toBe(at)
      at = raw.tensors.get(key)!.offsets[1]
    }

    expect(fs.readFileSync(path.join(out, ADAPTER_CONFIG), 'utf8')).toBe(PEFT_LLAMA_CONFIG(path.resolve(base)))
    expect(JSON.parse(fs.readFileSync(path.join(out, BASE_FINGERPRINT), 'utf8'))).toEqual(fp)
    expect(isAdapterDir(out)).toBe(true)
    expect(isAdapterDir(base)).toBe(false)
  })

  test('GPT-2: transformer.* keys, c_proj in attention and MLP, Conv1D flag, rsLoRA, dropout 0.0', () => {
    const out = tmp()
    const tensors = write(out, GPT2, GPT2_SETTINGS, { baseModel: 'relative/gpt2' })
    const raw = readRaw(path.join(out, ADAPTER_WEIGHTS))
    const expected: Record<string, number[]> = {}
    for (let l = 0; l < 2; l++) {
      const p = `base_model.model.transformer.h.${l}.`
      Object.assign(expected, {
        [`${p}attn.c_attn.lora_A.weight`]: [2, 8], [`${p}attn.c_attn.lora_B.weight`]: [24, 2],
        [`${p}attn.c_proj.lora_A.weight`]: [2, 8], [`${p}attn.c_proj.lora_B.weight`]: [8, 2],
        [`${p}mlp.c_proj.lora_A.weight`]: [2, 32], [`${p}mlp.c_proj.lora_B.weight`]: [8, 2],
      })
    }
    expect(raw.order).toEqual(Object.keys(expected).sort())
    for (const [key, shape] of Object.entries(expected)) {
      expect(raw.tensors.get(key)!.shape).toEqual(shape)
      expect(raw.tensors.get(key)!.data).toEqual(tensors.get(key.slice('base_model.model.transformer.'.length))!.data)
    }
    const text = fs.readFileSync(path.join(out, ADAPTER_CONFIG), 'utf8')
    expect(text).toContain('\n  "lora_dropout": 0.0,\n')
    const json = JSON.parse(text)
    const want = JSON.parse(PEFT_LLAMA_CONFIG(path.resolve('relative/gpt2')))
    Object.assign(want, { r: 2, lora_alpha: 16, lora_dropout: 0, use_rslora: true, fan_in_fan_out: true, target_modules: ['c_attn', 'c_proj'] })
    expect(json).toEqual(want)
    expect(fs.existsSync(path.join(out, BASE_FINGERPRINT))).toBe(false)
  })

  test('bf16 storage; a save without a fingerprint removes an old one; Python float spellings', () => {
    const out = tmp()
    const fp: BaseFingerprint = { path: '/x', bytes: 1, configSha256: 'a', indexSha256: 'b' }
    write(out, GPT2, GPT2_SETTINGS, { base: fp })
    expect(fs.existsSync(path.join(out, BASE_FINGERPRINT))).toBe(true)
    const tensors = write(out, GPT2, { ...GPT2_SETTINGS, dropout: 0.00001, alpha: 2.5 }, { dtype: 'BF16' })
    expect(fs.existsSync(path.join(out, BASE_FINGERPRINT))).toBe(false)
    const raw = readRaw(path.join(out, ADAPTER_WEIGHTS))
    const key = 'base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight'
    expect(raw.tensors.get(key)!.dtype).toBe('BF16')
    expect(Array.from(raw.tensors.get(key)!.data)).toEqual(Array.from(tensors.get('h.1.mlp.c_proj.lora_A.weight')!.data, bf16Round))
    const text = fs.readFileSync(path.join(out, ADAPTER_CONFIG), 'utf8')
    expect(text).toContain('"lora_dropout": 1e-05,')
    expect(text).toContain('"lora_alpha": 2.5,')
    const back = readAdapterDir(out, 'gpt2', GPT2)
    expect(back.settings).toEqual({ ...GPT2_SETTINGS, dropout: 0.00001, alpha: 2.5 })
    expect(Array.from(back.tensors.get('h.1.mlp.c_proj.lora_A.weight')!.data)).toEqual(Array.from(raw.tensors.get(key)!.data))
  })

  test('refuses tensors that are not the adapters of the settings', () => {
    const out = tmp()
    const tensors = adapterTensors(LLAMA, LLAMA_SETTINGS)
    const read = (name: string) => new Float32Array(tensors.find((t) => t.name === name)!.shape.reduce((a, d) => a * d, 1))
    const base = { arch: 'llama' as const, config: LLAMA, settings: LLAMA_SETTINGS, baseModel: '/b', read }
    expect(() => writeAdapterDir(out, { ...base, tensors: tensors.slice(1) })).toThrow(/no tensor given for model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight/)
    expect(() => writeAdapterDir(out, { ...base, tensors: [{ ...tensors[0], shape: [3, 16] }, ...tensors.slice(1)] }))
      .toThrow(/has shape \[3,16\], expected \[4,16\]/)
    expect(() => writeAdapterDir(out, { ...base, tensors: [...tensors, { name: 'lm_head.lora_A.weight', shape: [4, 16] }] }))
      .toThrow(/lm_head\.lora_A\.weight" is not an adapter of these settings/)
    expect(() => writeAdapterDir(out, { ...base, settings: { ...LLAMA_SETTINGS, targets: ['c_attn'] }, tensors }))
      .toThrow(/c_attn are not linear layers of this model/)
    expect(() => writeAdapterDir(out, { ...base, settings: { ...LLAMA_SETTINGS, r: 0 }, tensors })).toThrow(/r must be a positive integer/)
    expect(fs.readdirSync(out)).toEqual([])
  })
})

describe('readAdapterDir', () => {
  test('round trip of plwtune\'s own adapters (Llama with fingerprint, GPT-2 without)', () => {
    const dir = tmp()
    const base = fakeBase(path.join(dir, 'base'))
    const fp = baseFingerprint(base)
    const tensors = write(path.join(dir, 'a'), LLAMA, LLAMA_SETTINGS, { base: fp, baseModel: base })
    const back = readAdapterDir(path.join(dir, 'a'), 'llama', LLAMA)
    expect(back.settings).toEqual(LLAMA_SETTINGS)
    expect(back.baseModel).toBe(path.resolve(base))
    expect(back.base).toEqual(fp)
    expect([...back.tensors.keys()].sort()).toEqual([...tensors.keys()].sort())
    for (const [name, t] of tensors) expect(back.tensors.get(name)).toEqual(t)

    const g = write(path.join(dir, 'g'), GPT2, GPT2_SETTINGS)
    const gb = readAdapterDir(path.join(dir, 'g'), 'gpt2', GPT2)
    expect(gb.settings).toEqual(GPT2_SETTINGS)
    expect(gb.base).toBeNull()
    for (const [name, t] of g) expect(gb.tensors.get(name)).toEqual(t)
  })

  /** A directory as PEFT saves it: a config of the given fields, tensors in the file order given. */
  function peftDir(config: Record<string, unknown>, tensors: Array<{ name: string; shape: number[]; data: Float32Array }>): string {
    const dir = tmp()
    fs.writeFileSync(path.join(dir, ADAPTER_CONFIG), JSON.stringify(config))
    writeRaw(path.join(dir, ADAPTER_WEIGHTS), tensors)
    return dir
  }
  const llamaTensors = (r: number, leaves: string[], key: (module: string, which: string) => string) => {
    const rand = rng(3)
    return adapterTensors(LLAMA, { r, targets: leaves }).map((t) => {
      const [, module, which] = /^(.+)\.(lora_[AB])\.weight$/.exec(t.name)!
      return { name: key(module, which), engine: t.name, shape: t.shape, data: Float32Array.from({ length: t.shape[0] * t.shape[1] }, () => rand()) }
    })
  }

  test('PEFT\'s own layouts: defaults for missing fields, ".default" in keys, expanded all-linear paths, null targets', () => {
    // Only peft_type and target_modules as full module paths (what PEFT saves for "all-linear"); keys with the adapter name.
    const paths = LINEAR_MODULES.llama.flatMap((leaf) => [0, 1].map((l) => `model.layers.${l}.${['gate_proj', 'up_proj', 'down_proj'].includes(leaf) ? 'mlp' : 'self_attn'}.${leaf}`))
    const t8 = llamaTensors(8, LINEAR_MODULES.llama, (m, w) => `base_model.model.${m}.${w}.default.weight`)
    const a = readAdapterDir(peftDir({ peft_type: 'LORA', target_modules: paths.reverse() }, [...t8].reverse()), 'llama', LLAMA)
    expect(a.settings).toEqual({ r: 8, alpha: 8, dropout: 0, targets: LINEAR_MODULES.llama, rslora: false })
    expect(a.baseModel).toBeNull()
    expect(a.base).toBeNull()
    for (const t of t8) expect(a.tensors.get(t.engine)).toEqual({ shape: t.shape, data: t.data })

    // "all-linear" as written before expansion (any case), keys without the base_model.model. prefix (transformers' integration).
    const t2 = llamaTensors(2, LINEAR_MODULES.llama, (m, w) => `${m}.${w}.weight`)
    const b = readAdapterDir(peftDir({ peft_type: 'LORA', r: 2, lora_alpha: 4, use_rslora: true, lora_dropout: 0.1, target_modules: 'ALL-LINEAR',
      base_model_name_or_path: 'meta-llama/Llama-3.2-1B', future_field: 1 }, t2), 'llama', LLAMA)
    expect(b.settings).toEqual({ r: 2, alpha: 4, dropout: 0.1, targets: LINEAR_MODULES.llama, rslora: true })
    expect(b.baseModel).toBe('meta-llama/Llama-3.2-1B')

    // target_modules null: PEFT's default for llama (q_proj, v_proj); exclude_modules as a list; unrelated names ignored.
    const tqv = llamaTensors(4, ['q_proj', 'v_proj'], (m, w) => `base_model.model.${m}.${w}.weight`)
    expect(readAdapterDir(peftDir({ peft_type: 'LORA', r: 4, target_modules: null }, tqv), 'llama', LLAMA).settings.targets)
      .toEqual(['q_proj', 'v_proj'])
    expect(readAdapterDir(peftDir({ peft_type: 'LORA', r: 4, target_modules: ['q_proj', 'k_proj', 'v_proj', 'query_key_value'],
      exclude_modules: ['k_proj'] }, tqv), 'llama', LLAMA).settings.targets).toEqual(['q_proj', 'v_proj'])

    // GPT-2 keys without "transformer." (a GPT2Model base) map to the same engine names.
    const g = adapterTensors(GPT2, { r: 2, targets: ['c_fc'] }).map((t) => ({ ...t, name: `base_model.model.${t.name}`, data: new Float32Array(t.shape[0] * t.shape[1]).fill(0.5) }))
    const gd = readAdapterDir(peftDir({ peft_type: 'LORA', r: 2, target_modules: ['c_fc'], fan_in_fan_out: true }, g), 'gpt2', GPT2)
    expect([...gd.tensors.keys()].sort()).toEqual(['h.0.mlp.c_fc.lora_A.weight', 'h.0.mlp.c_fc.lora_B.weight', 'h.1.mlp.c_fc.lora_A.weight', 'h.1.mlp.c_fc.lora_B.weight'])
  })

  describe('refusals name the file and the field', () => {
    let good: string
    beforeAll(() => {
      good = tmp()
      write(good, LLAMA, LLAMA_SETTINGS)
    })
    /** A copy of the good adapter with config fields changed and tensors edited. */
    function variant(fields: Record<string, unknown>, edit?: (t: Map<string, { shape: number[]; data: Float32Array }>) => void): string {
      const dir = tmp()
      const config = { ...JSON.parse(fs.readFileSync(path.join(good, ADAPTER_CONFIG), 'utf8')), ...fields }
      fs.writeFileSync(path.join(dir, ADAPTER_CONFIG), JSON.stringify(config))
      const raw = readRaw(path.join(good, ADAPTER_WEIGHTS))
      const tensors = new Map([...raw.tensors].map(([k, v]) => [k, { shape: v.shape, data: v.data }]))
      edit?.(tensors)
      writeRaw(path.join(dir, ADAPTER_WEIGHTS), [...tensors].map(([name, t]) => ({ name, ...t })))
      return dir
    }
    const read = (dir: string) => () => readAdapterDir(dir, 'llama', LLAMA)
    const cfg = (dir: string) => path.join(dir, ADAPTER_CONFIG).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    const q0 = 'base_model.model.model.layers.0.self_attn.q_proj'

    test.each<[string, Record<string, unknown>, RegExp]>([
      ['another PEFT method', { peft_type: 'IA3' }, /"peft_type" is "IA3": plwtune runs LoRA adapters only/],
      ['no peft_type', { peft_type: undefined }, /"peft_type" is missing/],
      ['another task', { task_type: 'SEQ_CLS' }, /"task_type" is "SEQ_CLS"/],
      ['DoRA', { use_dora: true }, /"use_dora" is true: DoRA/],
      ['per-layer ranks', { rank_pattern: { 'model.layers.0.self_attn.q_proj': 8 } }, /"rank_pattern" is .*per-layer ranks/],
      ['per-layer alphas', { alpha_pattern: { q_proj: 2 } }, /"alpha_pattern" is .*per-layer alphas/],
      ['modules_to_save', { modules_to_save: ['lm_head'] }, /"modules_to_save" is \["lm_head"\]: fully trained extra modules/],
      ['bias', { bias: 'lora_only' }, /"bias" is "lora_only": trained biases/],
      ['layers_to_transform', { layers_to_transform: [0] }, /"layers_to_transform" is \[0\]: adapters on some blocks only/],
      ['layers_to_transform 0', { layers_to_transform: 0 }, /"layers_to_transform" is 0/],
      ['regex targets', { target_modules: '.*(q|v)_proj' }, /"target_modules" is ".*\(q\|v\)_proj": a regular expression is not supported/],
      ['regex exclude', { exclude_modules: '.*k_proj' }, /"exclude_modules" is .*a regular expression/],
      ['PiSSA', { init_lora_weights: 'pissa' }, /"init_lora_weights" is "pissa": this initialisation changes the base weights/],
      ['lora_bias', { lora_bias: true }, /"lora_bias" is true/],
      ['aLoRA', { alora_invocation_tokens: [1, 2] }, /"alora_invocation_tokens"/],
      ['bad r', { r: 2.5 }, /"r" is 2.5: expected a positive integer/],
      ['bad alpha', { lora_alpha: -1 }, /"lora_alpha" is -1/],
      ['bad dropout', { lora_dropout: 1 }, /"lora_dropout" is 1/],
      ['no linear layer', { target_modules: ['lm_head'] }, /"target_modules" is \["lm_head"\]: it selects none/],
    ])('%s', (_what, fields, message) => {
      const dir = variant(fields)
      expect(read(dir)).toThrow(new RegExp(`^${cfg(dir)}: ${message.source.replace(/^\^/, '')}`))
    })

    test('target_modules that adapt a name in some blocks only', () => {
      expect(read(variant({ target_modules: ['model.layers.0.self_attn.q_proj'] })))
        .toThrow(/adapts model\.layers\.0\.self_attn\.q_proj but not model\.layers\.1\.self_attn\.q_proj: plwtune adapts a module name \("q_proj"\) in every block/)
      const g = tmp()
      write(g, GPT2, GPT2_SETTINGS)
      const cfgText = JSON.parse(fs.readFileSync(path.join(g, ADAPTER_CONFIG), 'utf8'))
      fs.writeFileSync(path.join(g, ADAPTER_CONFIG), JSON.stringify({ ...cfgText, target_modules: ['c_attn', 'attn.c_proj'] }))
      expect(() => readAdapterDir(g, 'gpt2', GPT2)).toThrow(/adapts transformer\.h\.0\.attn\.c_proj but not transformer\.h\.0\.mlp\.c_proj/)
    })

    test('adapter_model.bin only', () => {
      const dir = tmp()
      fs.copyFileSync(path.join(good, ADAPTER_CONFIG), path.join(dir, ADAPTER_CONFIG))
      fs.writeFileSync(path.join(dir, 'adapter_model.bin'), 'pickle')
      expect(read(dir)).toThrow(/adapter_model\.bin \(a pickle\) is not read: save the adapter with `model\.save_pretrained\(dir, safe_serialization=True\)`/)
      fs.rmSync(path.join(dir, 'adapter_model.bin'))
      expect(read(dir)).toThrow(/no adapter_model\.safetensors/)
      expect(() => readAdapterDir(tmp(), 'llama', LLAMA)).toThrow(/no adapter_config\.json \(not a PEFT adapter directory\)/)
    })

    test('tensors: other modules, non-LoRA tensors, missing partner, wrong shapes, unselected modules, mixed adapter names', () => {
      const data = (n: number) => new Float32Array(n)
      expect(read(variant({}, (t) => {
        t.set('base_model.model.lm_head.lora_A.weight', { shape: [4, 16], data: data(64) })
        t.set('base_model.model.lm_head.lora_B.weight', { shape: [50, 4], data: data(200) })
      }))).toThrow(/tensor "base_model\.model\.lm_head\.lora_A\.weight" adapts "lm_head", which is not one of the linear layers plwtune adapts/)
      expect(read(variant({}, (t) => t.set('base_model.model.model.embed_tokens.weight', { shape: [50, 16], data: data(800) }))))
        .toThrow(/tensor "base_model\.model\.model\.embed_tokens\.weight" is not a LoRA matrix/)
      expect(read(variant({ use_dora: false }, (t) => t.set(`${q0}.lora_magnitude_vector`, { shape: [16], data: data(16) }))))
        .toThrow(/lora_magnitude_vector" is not a LoRA matrix/)
      expect(read(variant({}, (t) => t.delete(`${q0}.lora_B.weight`))))
        .toThrow(new RegExp(`tensor "${q0.replace(/\./g, '\\.')}\\.lora_A\\.weight" has no lora_B partner`))
      expect(read(variant({}, (t) => { t.delete(`${q0}.lora_A.weight`); t.delete(`${q0}.lora_B.weight`) })))
        .toThrow(/no lora_A\/lora_B for "model\.layers\.0\.self_attn\.q_proj", which target_modules .* selects/)
      expect(read(variant({ r: 8 }))).toThrow(/lora_A\.weight" has shape \[4,16\], expected \[8,16\] \(r, in\) = \(8, 16\)/)
      expect(read(variant({}, (t) => t.set(`${q0}.lora_B.weight`, { shape: [15, 4], data: data(60) }))))
        .toThrow(/q_proj\.lora_B\.weight" has shape \[15,4\], expected \[16,4\] \(out, r\)/)
      expect(read(variant({ target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj'] })))
        .toThrow(/adapts "model\.layers\.\d\.mlp\.down_proj", which target_modules .* does not select/)
      expect(read(variant({}, (t) => {
        const a = t.get(`${q0}.lora_A.weight`)!
        t.delete(`${q0}.lora_A.weight`)
        t.set(`${q0}.lora_A.other.weight`, a)
      }))).toThrow(/names adapter .* one adapter per directory/)
      expect(read(variant({}, (t) => t.set(`${q0}.lora_A.default.weight`, t.get(`${q0}.lora_A.weight`)!))))
        .toThrow(/names adapter|are the same matrix/)
    })
  })
})

describe('base fingerprint', () => {
  const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex')

  test('single file: size, config.json hash, header hash (length + JSON, no data)', () => {
    const base = fakeBase(path.join(tmp(), 'base'))
    const file = fs.readFileSync(path.join(base, 'model.safetensors'))
    const headerEnd = 8 + Number(file.readBigUInt64LE(0))
    const fp = baseFingerprint(base)
    expect(fp).toEqual({ path: path.resolve(base), bytes: file.length, configSha256: sha(fs.readFileSync(path.join(base, 'config.json'))),
      indexSha256: sha(file.subarray(0, headerEnd)) })
    expect(() => checkBase(base, fp, '/a')).not.toThrow()
    // A copy elsewhere is the same base.
    const copy = path.join(tmp(), 'copy')
    fs.cpSync(base, copy, { recursive: true })
    expect(() => checkBase(copy, fp, '/a')).not.toThrow()
  })

  test('detects a changed config, a changed tensor index, a changed size; says how to proceed', () => {
    const root = tmp()
    const base = fakeBase(path.join(root, 'base'))
    const fp = baseFingerprint(base)
    const other = (name: string, cfg?: Record<string, unknown>, names?: string[]) => fakeBase(path.join(root, name), cfg, names)
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    const head = (dir: string) => `^/runs/a: this adapter was trained on the base model ${esc(path.resolve(base))}, and ${esc(path.resolve(dir))} differs from it: `

    const c = other('config', { architectures: ['LlamaForCausalLM'], hidden_size: 17 })
    expect(() => checkBase(c, fp, '/runs/a')).toThrow(new RegExp(`${head(c)}a different config\\.json\\. Pass that base with --model ${esc(path.resolve(base))}`))
    // Same bytes of data, names of the same length: only the header differs.
    const i = other('index', undefined, ['model.norm.weight', 'model.embed_tokens.wEight'])
    expect(fs.statSync(path.join(i, 'model.safetensors')).size).toBe(fp.bytes)
    expect(() => checkBase(i, fp, '/runs/a')).toThrow(new RegExp(`${head(i)}a different tensor index \\(model\\.safetensors header\\)\\.`))
    const s = other('size', undefined, ['model.norm.weight', 'model.embed_tokens.weight', 'lm_head.weight'])
    expect(() => checkBase(s, fp, '/runs/a')).toThrow(/weight files of \d+ bytes, not \d+, a different tensor index/)
  })

  test('sharded: the shards\' sizes and the index file\'s hash', () => {
    const dir = tmp()
    fs.writeFileSync(path.join(dir, 'config.json'), '{}')
    const t = (name: string) => ({ name, shape: [4, 4], read: () => new Float32Array(16).fill(1) })
    writeTensorDir(dir, [t('a'), t('b'), t('c')], { maxShardBytes: 64 })
    expect(fs.existsSync(path.join(dir, 'model.safetensors.index.json'))).toBe(true)
    const fp = baseFingerprint(dir)
    const shards = fs.readdirSync(dir).filter((f) => /^model-.*\.safetensors$/.test(f))
    expect(shards.length).toBe(3)
    expect(fp.bytes).toBe(shards.reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0))
    expect(fp.indexSha256).toBe(sha(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'))))
    writeTensorDir(dir, [t('a'), t('b'), t('c')], { maxShardBytes: 128 }) // 2 shards: another index
    expect(() => checkBase(dir, fp, '/a')).toThrow(/a different tensor index \(model\.safetensors\.index\.json\)/)
  })
})

describe('mergeDelta', () => {
  /** W + scaling·B·A the plain way: per element, Σ_k in f64, k ascending. */
  function naive(layout: 'InOut' | 'OutIn', W: Float32Array, A: Float32Array, B: Float32Array, IC: number, OC: number, r: number, s: number) {
    const out = new Float32Array(W.length)
    for (let o = 0; o < OC; o++) {
      for (let i = 0; i < IC; i++) {
        let sum = 0
        for (let k = 0; k < r; k++) sum += B[o * r + k] * A[k * IC + i]
        const at = layout === 'OutIn' ? o * IC + i : i * OC + o
        out[at] = W[at] + s * sum
      }
    }
    return out
  }

  test.each([['OutIn', 5], ['InOut', 5], ['OutIn', 8], ['InOut', 8], ['OutIn', 1], ['InOut', 3]] as const)('%s, r = %i: identical to the triple loop', (layout, r) => {
    const rand = rng(r)
    const IC = 19, OC = 13
    const f = (n: number) => Float32Array.from({ length: n }, () => (rand() - 0.5) * 4)
    const W = f(IC * OC), A = f(r * IC), B = f(OC * r)
    const W0 = W.slice()
    const got = mergeDelta(layout, W, A, B, IC, OC, r, 2.5)
    expect(Array.from(got)).toEqual(Array.from(naive(layout, W, A, B, IC, OC, r, 2.5)))
    expect(W).toEqual(W0) // the weight is not changed in place
    // The delta is really there: the InOut result is the OutIn result transposed for a transposed W.
    if (layout === 'InOut') {
      const Wt = new Float32Array(W.length)
      for (let i = 0; i < IC; i++) for (let o = 0; o < OC; o++) Wt[o * IC + i] = W[i * OC + o]
      const ref = mergeDelta('OutIn', Wt, A, B, IC, OC, r, 2.5)
      for (let i = 0; i < IC; i++) for (let o = 0; o < OC; o++) expect(got[i * OC + o]).toBe(ref[o * IC + i])
    }
  })

  test('zero B is the identity; sizes are checked', () => {
    const W = Float32Array.from({ length: 12 }, (_, i) => i / 7)
    expect(mergeDelta('OutIn', W, new Float32Array(8).fill(3), new Float32Array(6), 4, 3, 2, 1)).toEqual(W)
    expect(() => mergeDelta('OutIn', W, new Float32Array(8), new Float32Array(5), 4, 3, 2, 1)).toThrow(/B has 5 values, expected 6/)
  })

  test('a 1024 × 1024 r = 16 merge is fast', () => {
    const n = 1024, r = 16
    const W = new Float32Array(n * n), A = new Float32Array(r * n).fill(0.5), B = new Float32Array(n * r).fill(0.25)
    const t0 = Date.now()
    const out = mergeDelta('OutIn', W, A, B, n, n, r, 2)
    expect(Date.now() - t0).toBeLessThan(2000) // ~25 ms here; 4096 × 4096 takes ~0.4 s
    expect(out[n * n - 1]).toBe(2 * 16 * 0.125)
  })
})

describe('settings', () => {
  test('resolveLoraTargets: all-linear, lists, arrays; order and duplicates; unknown names', () => {
    expect(resolveLoraTargets('llama', 'all-linear')).toEqual(LINEAR_MODULES.llama)
    expect(resolveLoraTargets('gpt2', 'All-Linear')).toEqual(['c_attn', 'c_proj', 'c_fc'])
    expect(resolveLoraTargets('llama', 'v_proj, q_proj,v_proj')).toEqual(['q_proj', 'v_proj'])
    expect(resolveLoraTargets('gpt2', ['c_fc', 'c_attn'])).toEqual(['c_attn', 'c_fc'])
    expect(resolveLoraTargets('gpt2', ['c_fc', 'all-linear'])).toEqual(['c_attn', 'c_proj', 'c_fc'])
    expect(() => resolveLoraTargets('gpt2', 'q_proj,c_attn')).toThrow('LoRA targets: "q_proj" is not a linear layer of a GPT-2 model; valid: c_attn, c_proj, c_fc or "all-linear"')
    expect(() => resolveLoraTargets('llama', ['lm_head', 'embed_tokens'])).toThrow(/"lm_head", "embed_tokens" are not linear layers of a Llama-family model; valid: q_proj, k_proj/)
    expect(() => resolveLoraTargets('llama', ' , ')).toThrow(/none given/)
  })

  test('loraScaling and validateLoraSettings', () => {
    expect(loraScaling({ ...LLAMA_SETTINGS, r: 16, alpha: 32 })).toBe(2)
    expect(loraScaling({ ...LLAMA_SETTINGS, r: 16, alpha: 32, rslora: true })).toBe(8)
    expect(() => validateLoraSettings(LLAMA_SETTINGS, 'x')).not.toThrow()
    expect(() => validateLoraSettings({ ...LLAMA_SETTINGS, r: 1.5 }, 'cfg')).toThrow('cfg: r must be a positive integer, received 1.5')
    expect(() => validateLoraSettings({ ...LLAMA_SETTINGS, alpha: 0 }, 'cfg')).toThrow('cfg: alpha must be a finite number > 0, received 0')
    expect(() => validateLoraSettings({ ...LLAMA_SETTINGS, alpha: Infinity }, 'cfg')).toThrow(/cfg: alpha must be/)
    expect(() => validateLoraSettings({ ...LLAMA_SETTINGS, dropout: 1 }, 'cfg')).toThrow('cfg: dropout must be a number in [0, 1), received 1')
    expect(() => validateLoraSettings({ ...LLAMA_SETTINGS, dropout: -0.1 }, 'cfg')).toThrow(/cfg: dropout/)
    expect(() => validateLoraSettings({ ...LLAMA_SETTINGS, targets: [] }, 'cfg')).toThrow('cfg: targets must be a non-empty list of module names, received []')
  })
})
