/**
 * Llama-family model directories: config.json parsing per family (defaults, biases, q/k norm,
 * llama3 rope scaling in its old and new spellings, sliding windows, refusals), save → load →
 * save byte-identical (single file and sharded, f32 and bf16), the base dtype kept on save,
 * every config.json field kept, and errors that name the key.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { configFromHf, llamaConfig, LlamaModelConfig } from '../ts/arch'
import { readConfig } from '../ts/checkpoint'
import { SaveOptions, initModel, loadModel } from '../ts/model'
import { openTensorDir } from '../ts/tensor-dir'
import { rng } from './support/reference'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-llama-'))

/** Llama-3.2-1B's config.json, as published (dimensions shrunk to a test size). */
const LLAMA32 = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000,
  eos_token_id: 128001, head_dim: 8, hidden_act: 'silu', hidden_size: 32, initializer_range: 0.02, intermediate_size: 64,
  max_position_embeddings: 131072, mlp_bias: false, model_type: 'llama', num_attention_heads: 4, num_hidden_layers: 2,
  num_key_value_heads: 2, pretraining_tp: 1, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.45.0.dev0', use_cache: true,
  vocab_size: 50,
}

describe('config.json of each family', () => {
  test('Llama 3.2: GQA, tied, llama3 scaling; every field kept for the save', () => {
    const c = configFromHf(LLAMA32, 'config.json') as LlamaModelConfig
    expect(c).toMatchObject({ arch: 'llama', family: 'llama', hiddenSize: 32, numHeads: 4, numKvHeads: 2, headDim: 8,
      tieWordEmbeddings: true, qkvBias: false, oBias: false, qkNorm: false, slidingWindow: 0, ropeTheta: 500000,
      ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } })
    // The old spelling "type" and transformers 5's rope_parameters mean the same.
    const old = configFromHf({ ...LLAMA32, rope_scaling: { ...LLAMA32.rope_scaling, rope_type: undefined, type: 'llama3' } }, 'c')
    expect((old as LlamaModelConfig).ropeScaling).toEqual(c.ropeScaling)
    const { rope_scaling: _s, rope_theta: _t, ...rest } = LLAMA32
    const v5 = configFromHf({ ...rest, rope_parameters: { ...LLAMA32.rope_scaling, rope_theta: 500000 } }, 'c') as LlamaModelConfig
    expect([v5.ropeTheta, v5.ropeScaling]).toEqual([c.ropeTheta, c.ropeScaling])
  })

  test('defaults when fields are absent (Llama 2 style): MHA, head_dim = hidden/heads, untied, theta 1e4', () => {
    const c = configFromHf({ architectures: ['LlamaForCausalLM'], hidden_size: 32, intermediate_size: 64, num_attention_heads: 4,
      num_hidden_layers: 2, vocab_size: 50, max_position_embeddings: 64, attention_bias: true }, 'c') as LlamaModelConfig
    expect(c).toMatchObject({ numKvHeads: 4, headDim: 8, tieWordEmbeddings: false, ropeTheta: 10000, ropeScaling: null,
      qkvBias: true, oBias: true, rmsNormEps: 1e-6 })
  })

  test('Qwen2 always has q/k/v biases and never an o bias; Qwen3 has q/k norms; Mistral a sliding window', () => {
    const base = { hidden_size: 32, intermediate_size: 64, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2,
      vocab_size: 50, max_position_embeddings: 4096 }
    expect(configFromHf({ ...base, architectures: ['Qwen2ForCausalLM'], sliding_window: 4096, use_sliding_window: false }, 'c'))
      .toMatchObject({ family: 'qwen2', qkvBias: true, oBias: false, qkNorm: false, slidingWindow: 0 })
    expect(configFromHf({ ...base, architectures: ['Qwen3ForCausalLM'], head_dim: 16, attention_bias: false }, 'c'))
      .toMatchObject({ family: 'qwen3', qkvBias: false, qkNorm: true, headDim: 16 })
    expect(configFromHf({ ...base, architectures: ['MistralForCausalLM'], sliding_window: 1024 }, 'c'))
      .toMatchObject({ family: 'mistral', slidingWindow: 1024, qkvBias: false })
    expect(configFromHf({ ...base, architectures: ['MistralForCausalLM'], sliding_window: null }, 'c'))
      .toMatchObject({ slidingWindow: 0 })
  })

  test('refusals name the field and what is supported', () => {
    expect(() => configFromHf({ ...LLAMA32, architectures: ['GemmaForCausalLM'] }, 'x/config.json'))
      .toThrow(/x\/config.json: architectures \["GemmaForCausalLM"\] is not supported; plwtune loads GPT2LMHeadModel, LlamaForCausalLM/)
    expect(() => configFromHf({ ...LLAMA32, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'c'))
      .toThrow(/rope_scaling type "yarn" is not supported/)
    expect(() => configFromHf({ ...LLAMA32, hidden_act: 'gelu' }, 'c')).toThrow(/hidden_act "gelu" is not supported/)
    expect(() => configFromHf({ ...LLAMA32, num_key_value_heads: 3 }, 'c')).toThrow(/multiple of num_key_value_heads \(3\)/)
    expect(() => configFromHf({ ...LLAMA32, hidden_size: '32' }, 'c')).toThrow(/field "hidden_size": expected a positive integer, received "32"/)
  })
})

async function savedLlama(dir: string, config: LlamaModelConfig, options: SaveOptions = {}) {
  const model = await initModel(config, { seed: 3, maxBatch: 1, maxSeqLen: 8 })
  const r = rng(4)
  for (const p of model.parameters()) model.write(p.name, model.read(p.name).map((x) => x + 0.01 * (r() - 0.5)))
  await model.save(dir, options)
  return model
}

describe('Llama-family model directories', () => {
  const untied = llamaConfig({ family: 'qwen2', vocabSize: 50, hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8,
    intermediateSize: 64, maxPositions: 64, tieWordEmbeddings: false })

  test('save → load → save is byte-identical, single file and sharded; the loaded model computes the same logits', async () => {
    for (const maxShardBytes of [5e9, 20_000]) {
      const d1 = tmp(), d2 = tmp()
      const a = await savedLlama(d1, untied, { maxShardBytes })
      const b = await loadModel(d1, { maxBatch: 1, maxSeqLen: 8 })
      await b.save(d2, { maxShardBytes })
      const files = fs.readdirSync(d1).sort()
      expect(fs.readdirSync(d2).sort()).toEqual(files)
      if (maxShardBytes < 1e6) expect(files).toContain('model.safetensors.index.json')
      else expect(files).toContain('model.safetensors')
      for (const f of files) expect({ f, same: fs.readFileSync(path.join(d1, f)).equals(fs.readFileSync(path.join(d2, f))) }).toEqual({ f, same: true })
      const batch = { B: 1, T: 8, tokens: Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), targets: new Int32Array(8), weights: new Float32Array(8) }
      expect(await b.logits(batch)).toEqual(await a.logits(batch))
      // transformers' key names and shapes; biases where Qwen2 has them; an untied head is saved.
      const t = openTensorDir(d1)
      expect(t.info('model.layers.0.self_attn.k_proj.weight').shape).toEqual([16, 32])
      expect(t.has('model.layers.0.self_attn.q_proj.bias')).toBe(true)
      expect(t.has('model.layers.0.self_attn.o_proj.bias')).toBe(false)
      expect(t.has('lm_head.weight')).toBe(true)
      t.close()
      expect(JSON.parse(fs.readFileSync(path.join(d1, 'config.json'), 'utf8'))).toMatchObject({
        architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', num_key_value_heads: 2, tie_word_embeddings: false, torch_dtype: 'float32' })
      a.dispose(); b.dispose()
    }
  })

  test('a bf16 checkpoint loads, keeps every config.json field, and saves back in bf16 (f32 on request); no lm_head when tied', async () => {
    const c = configFromHf(LLAMA32, 'c') as LlamaModelConfig
    const d0 = tmp(), d1 = tmp(), d2 = tmp()
    const m = await savedLlama(d0, { ...c, hf: undefined }, { dtype: 'BF16' })
    fs.writeFileSync(path.join(d0, 'config.json'), JSON.stringify(LLAMA32)) // the published file, every field
    const loaded = await loadModel(d0, { maxBatch: 1, maxSeqLen: 8 })
    expect(loaded.sourceDtype).toBe('BF16')
    await loaded.save(d1)
    const cfg = JSON.parse(fs.readFileSync(path.join(d1, 'config.json'), 'utf8'))
    expect(cfg).toEqual(LLAMA32)
    const t = openTensorDir(d1)
    expect(t.info('model.embed_tokens.weight').dtype).toBe('BF16')
    expect(t.has('lm_head.weight')).toBe(false)
    t.close()
    expect(fs.readFileSync(path.join(d1, 'model.safetensors')).equals(fs.readFileSync(path.join(d0, 'model.safetensors')))).toBe(true)
    await loaded.save(d2, { dtype: 'F32' })
    expect(readConfig(d2)).toMatchObject({ arch: 'llama', numKvHeads: 2 })
    expect(JSON.parse(fs.readFileSync(path.join(d2, 'config.json'), 'utf8')).torch_dtype).toBe('float32')
    m.dispose(); loaded.dispose()
  })

  test('missing, misshapen and unexpected tensors are errors naming the key and both shapes', async () => {
    const d = tmp()
    const m = await savedLlama(d, untied)
    m.dispose()
    const t = openTensorDir(d)
    const tensors = t.keys().map((k) => ({ name: k, shape: t.info(k).shape, data: t.read(k) }))
    t.close()
    const { writeSafetensors } = await import('../ts/safetensors')
    const rewrite = (list: typeof tensors) => writeSafetensors(path.join(d, 'model.safetensors'), list)
    rewrite(tensors.filter((x) => x.name !== 'model.layers.1.mlp.up_proj.weight'))
    await expect(loadModel(d)).rejects.toThrow(/missing tensor "model.layers.1.mlp.up_proj.weight" \(shape \[64,32\]\)/)
    rewrite(tensors.map((x) => x.name === 'model.norm.weight' ? { ...x, shape: [16], data: x.data.slice(0, 16) } : x))
    await expect(loadModel(d)).rejects.toThrow(/tensor "model.norm.weight" has shape \[16\], expected \[32\]/)
    rewrite([...tensors, { name: 'model.layers.2.input_layernorm.weight', shape: [32], data: new Float32Array(32) }])
    await expect(loadModel(d)).rejects.toThrow(/no place for: model.layers.2.input_layernorm.weight/)
    // Buffers old checkpoints carry are not parameters.
    rewrite([...tensors, { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', shape: [4], data: new Float32Array(4) }])
    ;(await loadModel(d)).dispose()
  })
})
