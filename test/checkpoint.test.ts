/** Hugging Face GPT-2 directories: load, save, round trips, dtypes, prefixes, and errors. */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { GPT2Config } from '../ts/native'
import { initModel } from '../ts/model'
import { readConfig, configJson } from '../ts/checkpoint'
import { loadModel } from '../ts/model'
import { writeSafetensors, openSafetensors } from '../ts/safetensors'
import { rng, randInt, bf16Round } from './support/reference'

const cfg: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 8, nPositions: 12, vocabSize: 13 }
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-ckpt-'))

/** A HF-style dir written by hand, with the tensors of `model`, under options. */
function writeDir(dir: string, tensors: Array<{ name: string; shape: number[]; data: Float32Array }>,
  config: Record<string, unknown> = configJson(cfg)): void {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config))
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors)
}

describe('checkpoints', () => {
  test('save → load → save is byte-identical, and the loaded model computes the same logits', async () => {
    const a = await initModel(cfg, { seed: 3, maxSeqLen: 6 })
    const d1 = tmp(), d2 = tmp()
    await a.save(d1)
    const b = await loadModel(d1, { maxSeqLen: 6 })
    await b.save(d2)
    for (const f of ['config.json', 'model.safetensors']) {
      expect(fs.readFileSync(path.join(d2, f)).equals(fs.readFileSync(path.join(d1, f)))).toBe(true)
    }
    const r = rng(1)
    const batch = { B: 1, T: 6, tokens: randInt(6, 13, r), targets: randInt(6, 13, r), weights: new Float32Array(6).fill(1) }
    expect(Buffer.from((await b.logits(batch)).buffer).equals(Buffer.from((await a.logits(batch)).buffer))).toBe(true)
    // The file is what transformers expects: F32, "transformer." keys, the real vocabulary, no lm_head.
    const st = openSafetensors(path.join(d1, 'model.safetensors'))
    expect(st.metadata.format).toBe('pt')
    expect(st.tensors.get('transformer.wte.weight')!.shape).toEqual([13, 8])
    expect([...st.tensors.values()].every((t) => t.dtype === 'F32')).toBe(true)
    expect(st.tensors.has('lm_head.weight')).toBe(false)
    st.close()
    expect(readConfig(d1)).toMatchObject({ arch: 'gpt2', ...cfg })
    a.dispose(); b.dispose()
  })

  test('keys with or without "transformer.", attn.bias buffers ignored, F16 and BF16 widened', async () => {
    const src = await initModel(cfg, { seed: 5 })
    const plain = src.parameters().map((p) => ({ name: p.name, shape: p.shape, data: src.read(p.name) }))
    const d = tmp()
    writeDir(d, [...plain, { name: 'h.0.attn.bias', shape: [1, 1, 12, 12], data: new Float32Array(144) },
      { name: 'h.1.attn.masked_bias', shape: [1], data: new Float32Array(1) }])
    const m = await loadModel(d)
    expect(Array.from(m.read('h.1.mlp.c_fc.bias'))).toEqual(Array.from(src.read('h.1.mlp.c_fc.bias')))
    m.dispose()

    // BF16 and F16 files (hand-encoded): the loader widens them exactly.
    const d2 = tmp()
    fs.writeFileSync(path.join(d2, 'config.json'), JSON.stringify(configJson(cfg)))
    const entries = plain.map((t, i) => ({ ...t, dtype: i % 2 ? 'BF16' : 'F16' }))
    const header: Record<string, unknown> = {}
    const chunks: Buffer[] = []
    let off = 0
    for (const e of entries) {
      const buf = Buffer.alloc(e.data.length * 2)
      e.data.forEach((x, j) => {
        if (e.dtype === 'BF16') buf.writeUInt16LE(new Uint32Array(new Float32Array([bf16Round(x)]).buffer)[0] >>> 16, 2 * j)
        else buf.writeUInt16LE(f16Bits(x), 2 * j)
      })
      header[`transformer.${e.name}`] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + buf.length] }
      off += buf.length
      chunks.push(buf)
    }
    const json = Buffer.from(JSON.stringify(header))
    const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(json.length))
    fs.writeFileSync(path.join(d2, 'model.safetensors'), Buffer.concat([len, json, ...chunks]))
    const h = await loadModel(d2)
    const wte = h.read('wte.weight'), orig = src.read('wte.weight') // index 0: F16
    wte.forEach((x, j) => expect(Math.abs(x - orig[j])).toBeLessThanOrEqual(Math.abs(orig[j]) * 2 ** -11 + 2 ** -24))
    expect(Array.from(h.read('wpe.weight'))).toEqual(Array.from(src.read('wpe.weight')).map(bf16Round)) // index 1: BF16
    h.dispose(); src.dispose()
  })

  test('missing, misshapen and unexpected tensors, and bad configs, are errors naming the key', async () => {
    const src = await initModel(cfg, { seed: 6 })
    const all = src.parameters().map((p) => ({ name: `transformer.${p.name}`, shape: p.shape, data: src.read(p.name) }))
    const d1 = tmp()
    writeDir(d1, all.filter((t) => t.name !== 'transformer.h.1.ln_2.bias'))
    await expect(loadModel(d1)).rejects.toThrow(/missing tensor "transformer.h.1.ln_2.bias" \(shape \[8\]\)/)
    const d2 = tmp()
    writeDir(d2, all.map((t) => (t.name.endsWith('ln_f.weight') ? { ...t, shape: [2, 4] } : t)))
    await expect(loadModel(d2)).rejects.toThrow(/"transformer.ln_f.weight" has shape \[2,4\], expected \[8\]/)
    const d3 = tmp()
    writeDir(d3, [...all, { name: 'transformer.h.2.ln_1.weight', shape: [8], data: new Float32Array(8) }])
    await expect(loadModel(d3)).rejects.toThrow(/tensors this GPT-2 config has no place for: h.2.ln_1.weight/)
    const d4 = tmp()
    writeDir(d4, all, { ...configJson(cfg), n_head: 'two' })
    await expect(loadModel(d4)).rejects.toThrow(/field "n_head": expected a positive integer/)
    const d5 = tmp()
    fs.writeFileSync(path.join(d5, 'config.json'), JSON.stringify(configJson(cfg)))
    fs.writeFileSync(path.join(d5, 'pytorch_model.bin'), '')
    await expect(loadModel(d5)).rejects.toThrow(/no model.safetensors or model.safetensors.index.json \(pytorch_model.bin is not read/)
    await expect(loadModel(tmp())).rejects.toThrow(/no config.json/)
    const d6 = tmp()
    writeDir(d6, all, { ...configJson(cfg), architectures: ['FalconForCausalLM'], model_type: 'falcon' })
    await expect(loadModel(d6)).rejects.toThrow(
      /architectures \["FalconForCausalLM"\] is not supported; plwtune loads GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM/)
    const { architectures: _, ...untyped } = configJson(cfg)
    writeDir(d6, all, { ...untyped, model_type: 'bert' })
    await expect(loadModel(d6)).rejects.toThrow(/model_type "bert" is not supported/)
    const d7 = tmp()
    writeDir(d7, all)
    fs.writeFileSync(path.join(d7, 'model.safetensors'), Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0x7b]))
    await expect(loadModel(d7)).rejects.toThrow(/header/)
    src.dispose()
  })
})

/** float32 → IEEE half bits, round to nearest even (normal and subnormal range). */
function f16Bits(x: number): number {
  const f = new Float32Array([x]), u = new Uint32Array(f.buffer)[0]
  const sign = (u >>> 16) & 0x8000
  const exp = ((u >>> 23) & 0xff) - 127 + 15
  let mant = u & 0x7fffff
  if (exp >= 31) return sign | 0x7c00
  if (exp <= 0) {
    if (exp < -10) return sign
    mant |= 0x800000
    const shift = 14 - exp
    const half = 1 << (shift - 1)
    let r = mant >>> shift
    if ((mant & ((1 << shift) - 1)) > half || ((mant & ((1 << shift) - 1)) === half && r & 1)) r++
    return sign | r
  }
  let r = (exp << 10) | (mant >>> 13)
  const rest = mant & 0x1fff
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r++
  return sign | r
}
