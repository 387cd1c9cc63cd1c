/**
 * The training run's configuration: every field with its default and what it means, in one
 * typed object (nanoGPT's way). A JSON config file (--config) and command-line flags
 * (--kebab-case of each key; flags win) are checked against it: unknown keys and wrong
 * types are errors that name the key.
 */
import { MODEL_LIMITS } from '../arch/config-reader'
import { forbiddenKey, forbiddenKeyMessage } from '../json-keys'

export interface TrainConfig {
  /** Hugging Face GPT-2 directory to fine-tune; null: a fresh GPT-2 of `init` (the demo's). */
  model: string | null
  /** Training data (JSON or JSONL: Alpaca, prompt/completion or chat records); null: the built-in demo set. */
  data: string | null
  /** Validation data; null: `valSplit` of `data`. */
  valData: string | null
  /** Record format of the data files; 'auto' detects it from the first record. */
  format: 'auto' | 'alpaca' | 'prompt-completion' | 'chat'
  /** alpaca, phi3, chatml, completion, chat_template (the model's own), auto, or a template string with {instruction} {input} {output}. */
  template: string
  /** λ, the loss weight of prompt tokens (completion tokens weigh 1). 0 masks the prompt; 1 is plain LM training. */
  promptLossWeight: number
  /** Passes over the training split (ignored when maxSteps > 0). */
  epochs: number
  /** Optimizer steps to run; 0: `epochs` decide. */
  maxSteps: number
  /** Examples per optimizer step. */
  batchSize: number
  /** Examples per forward/backward; batchSize / microBatchSize micro-batches accumulate. 0: batchSize. */
  microBatchSize: number
  /** Peak learning rate. */
  lr: number
  /** Linear warmup from 0 over this many steps. */
  warmupSteps: number
  /** Decay after warmup, to minLrRatio · lr at the last step. */
  lrSchedule: 'cosine' | 'linear' | 'constant'
  minLrRatio: number
  weightDecay: number
  adamBeta1: number
  adamBeta2: number
  adamEps: number
  /** Global gradient-norm clipping; 0: off. */
  maxGradNorm: number
  /** Tokens per example (prompt + completion + eos); longer prompts are cut from the start. 0: the model's n_positions. */
  maxLength: number
  /** Several examples per row (attention and positions kept apart per example). */
  packing: boolean
  /** Shuffle each epoch (false: file order). */
  shuffle: boolean
  /** Group examples of similar length into the same micro-batches (less padding). */
  groupByLength: boolean
  /** Fractions of `data` held out for validation and test (ignored for val when valData is given). */
  valSplit: number
  testSplit: number
  /** Model initialization and data order. */
  seed: number
  /** The train/val/test split (and the demo set's generation): fixed apart from `seed`, so runs
   *  with different seeds (a sweep) are evaluated on the same held-out records. */
  dataSeed: number
  /** Evaluate on the validation split every N steps; 0: at the end of each epoch. */
  evalEvery: number
  /** Checkpoint every N steps; 0: only at the end (and on Ctrl-C). */
  saveEvery: number
  /** Checkpoints kept in checkpoints/ (the newest); best/ is kept apart. */
  keepCheckpoints: number
  /** Stop after this many evaluations without a better validation completion loss; 0: off. */
  earlyStoppingPatience: number
  /** Log a metrics line every N steps. */
  logEvery: number
  device: 'cpu' | 'cuda' | 'auto'
  /** Activations' arithmetic: 'auto' is bf16 mixed precision on cuda, f32 on cpu (see docs/precision.md). */
  precision: 'f32' | 'bf16' | 'auto'
  /**
   * Memory/compute trade (docs/memory.md): none | attention (fused, no T×T probabilities) |
   * block (also recompute each layer in the backward) | auto (the first that fits: cpu attention, block;
   * cuda none, attention, block).
   */
  recompute: 'none' | 'attention' | 'block' | 'auto'
  /** The run directory. */
  out: string
  /** Continue the run in this directory exactly where it stopped (the command line's --resume only, never a config file). */
  resume: string | null
  /** Replace the plwtune run in `out` (a new run is refused there otherwise); never deletes a directory that is not a run. */
  overwrite: boolean
  /** With --resume: continue although a data file changed since the run started (the result is then not the uninterrupted run's). */
  allowDataChange: boolean
  /** Skip (and count) invalid records instead of stopping at them. */
  skipInvalid: boolean
  /** Test records to answer by generation at the end (exact match); 0: none. */
  generateEval: number
  maxNewTokens: number
  /** A fresh model when `model` is null (the tokenizer sets vocab_size). */
  init: { nLayer: number; nHead: number; nEmbd: number; nPositions: number; nKvHead?: number }
  /**
   * The architecture of a fresh model: 'gpt2', or 'llama' / 'qwen2' / 'qwen3' / 'mistral'
   * (the Llama family with that family's flags; see docs/models.md).
   */
  initArch: 'gpt2' | 'llama' | 'qwen2' | 'qwen3' | 'mistral'
  /**
   * Tensor dtype of saved models (final/, best/): 'auto' keeps the base checkpoint's (f32 for a
   * fresh model). Checkpoints for --resume always hold the f32 masters.
   */
  saveDtype: 'auto' | 'float32' | 'bfloat16' | 'float16'
  /** Shard model files above this size, as transformers writes them ("5GB", "500MB"). */
  maxShardSize: string
  /** Records of the built-in demo set (when `data` is null). */
  demoRecords: number
  /** LoRA rank; 0: full fine-tuning. With r > 0 the base (`model`) is frozen and only adapters train (docs/lora.md). */
  loraR: number
  /** LoRA's alpha: the adapters' output is scaled by alpha / r (alpha / √r with useRslora). */
  loraAlpha: number
  /** Dropout on the adapters' input during training. */
  loraDropout: number
  /** Modules that get adapters, as PEFT names them (q_proj,v_proj… / c_attn,c_proj,c_fc), or all-linear (not the head). */
  loraTargets: string
  /** rsLoRA: scale by alpha / √r, stable across ranks. */
  useRslora: boolean
}

export const DEFAULTS: TrainConfig = {
  model: null,
  data: null,
  valData: null,
  format: 'auto',
  template: 'auto',
  promptLossWeight: 0.1, // the study's best λ for short completions
  epochs: 3,
  maxSteps: 0,
  batchSize: 16,
  microBatchSize: 0,
  lr: 1e-4,
  warmupSteps: 10,
  lrSchedule: 'cosine',
  minLrRatio: 0.1,
  weightDecay: 0.01,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEps: 1e-8,
  maxGradNorm: 1.0,
  maxLength: 0,
  packing: false,
  shuffle: true,
  groupByLength: false,
  valSplit: 0.05,
  testSplit: 0,
  seed: 42,
  dataSeed: 42,
  evalEvery: 0,
  saveEvery: 0,
  keepCheckpoints: 2,
  earlyStoppingPatience: 0,
  logEvery: 1,
  device: 'auto',
  precision: 'auto',
  recompute: 'auto',
  out: 'runs/latest',
  resume: null,
  overwrite: false,
  allowDataChange: false,
  skipInvalid: false,
  generateEval: 0,
  maxNewTokens: 32,
  init: { nLayer: 4, nHead: 4, nEmbd: 128, nPositions: 256, nKvHead: 0 }, // nKvHead 0: nHead (Llama family only)
  initArch: 'gpt2',
  saveDtype: 'auto',
  maxShardSize: '5GB',
  demoRecords: 6000,
  loraR: 0,
  loraAlpha: 16,
  loraDropout: 0.05,
  loraTargets: 'all-linear',
  useRslora: false,
}

/**
 * The demo's preset: what `npm run train` with no arguments runs. Only what differs from the
 * defaults, and why. A tiny byte-level GPT (4 layers, 128 channels, ~0.9M parameters) on the
 * built-in task set; ~9.6k tokens per step (48 examples × ~200 bytes).
 */
export const DEMO: Partial<TrainConfig> = {
  // Short prompts: Alpaca's 204-byte preamble would be most of every byte-level example.
  template: '{instruction}\nInput: {input}\nAnswer: {output}',
  lr: 2e-3, // a small model from scratch learns fast at a high rate
  warmupSteps: 30,
  batchSize: 48,
  maxSteps: 1000, // 2 min 23 s on 2 quiet CPU cores for 67% test exact match (450 steps: ~39%)
  valSplit: 0.05,
  testSplit: 0.05,
  evalEvery: 125,
  saveEvery: 250,
  weightDecay: 0.1,
  generateEval: 200,
  maxNewTokens: 16,
  packing: true, // short examples: several per row, no padding
  maxLength: 256,
  out: 'runs/demo',
  overwrite: true, // `npm run train` again replaces the previous demo run (only ever a plwtune run)
}


export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

const ENUMS: Partial<Record<keyof TrainConfig, readonly string[]>> = {
  format: ['auto', 'alpaca', 'prompt-completion', 'chat'],
  lrSchedule: ['cosine', 'linear', 'constant'],
  device: ['cpu', 'cuda', 'auto'],
  precision: ['f32', 'bf16', 'auto'],
  recompute: ['none', 'attention', 'block', 'auto'],
  initArch: ['gpt2', 'llama', 'qwen2', 'qwen3', 'mistral'],
  saveDtype: ['auto', 'float32', 'bfloat16', 'float16'],
}
const NULLABLE_STRINGS = new Set<keyof TrainConfig>(['model', 'data', 'valData', 'resume'])
const INTEGERS = new Set<keyof TrainConfig>(['epochs', 'maxSteps', 'batchSize', 'microBatchSize', 'warmupSteps', 'maxLength',
  'seed', 'dataSeed', 'evalEvery', 'saveEvery', 'keepCheckpoints', 'earlyStoppingPatience', 'logEvery', 'generateEval', 'maxNewTokens',
  'demoRecords', 'loraR'])

/** Sizes of a fresh model: the limits a config.json is held to (ts/arch/config-reader.ts). */
const INIT_LIMITS: Record<keyof TrainConfig['init'], number> = {
  nLayer: MODEL_LIMITS.layers, nHead: MODEL_LIMITS.heads, nEmbd: MODEL_LIMITS.hidden, nPositions: MODEL_LIMITS.positions,
  nKvHead: MODEL_LIMITS.heads,
}

/**
 * [lo, hi, lo excluded?] of the numbers the engine range-checks when it gets them (the
 * optimizer's at every step, the adapters' when the model is made): native/binding/model.cpp.
 * The learning rate of a step is at most `lr` (warmup and decay only lower it).
 */
export const ENGINE_RANGES: Partial<Record<keyof TrainConfig, [number, number, boolean?]>> = {
  lr: [0, 1e3, true],
  weightDecay: [0, 1e3],
  adamBeta1: [0, 0.999999999],
  adamBeta2: [0, 0.999999999],
  adamEps: [1e-30, 1],
  maxGradNorm: [0, 1e30],
  loraR: [0, 65536],
  loraAlpha: [0, 1e30, true],
  loraDropout: [0, 0.999999],
}

/** Checks one key's value against the defaults' type; returns it typed. `where` names the source. */
function checkValue(key: keyof TrainConfig, value: unknown, where: string): unknown {
  const expected = DEFAULTS[key]
  const fail = (what: string): never => {
    // JSON.stringify shows Infinity and NaN as null: say what was given
    const shown = typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value)
    throw new ConfigError(`${where}: Expected ${what} for ${key} but received ${shown}`)
  }
  if (key === 'init') {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('an object {nLayer, nHead, nEmbd, nPositions, nKvHead}')
    const o = value as Record<string, unknown>
    for (const k of Object.keys(o)) if (!Object.hasOwn(DEFAULTS.init, k)) fail(`only nLayer, nHead, nEmbd, nPositions, nKvHead (not ${k}) in an object`)
    for (const k of Object.keys(DEFAULTS.init)) {
      const min = k === 'nKvHead' ? 0 : 1
      const max = INIT_LIMITS[k as keyof TrainConfig['init']]
      if (Object.hasOwn(o, k) && !(Number.isInteger(o[k]) && (o[k] as number) >= min && (o[k] as number) <= max)) {
        fail(`an integer ${k} in [${min}, ${max}] (plwtune's limits: docs/reliability.md)`)
      }
    }
    return { ...DEFAULTS.init, ...o }
  }
  if (key === 'maxShardSize') {
    if (typeof value !== 'string' || parseSize(value) === null) fail('a size such as "5GB" or "500MB"')
    return value
  }
  if (NULLABLE_STRINGS.has(key)) {
    if (value !== null && (typeof value !== 'string' || value === '')) fail('a non-empty string or null')
    return value
  }
  const options = Object.hasOwn(ENUMS, key) ? ENUMS[key] : undefined
  if (options) {
    if (typeof value !== 'string' || !options.includes(value)) fail(`one of ${options.join(', ')}`)
    return value
  }
  if (typeof expected === 'boolean') {
    if (typeof value !== 'boolean') fail('true or false')
    return value
  }
  if (typeof expected === 'string') {
    if (typeof value !== 'string' || value === '') fail('a non-empty string')
    return value
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) fail('a number')
  const x = value as number
  if (INTEGERS.has(key) && !Number.isInteger(x)) fail('an integer')
  if (x < 0) fail('a number ≥ 0')
  return x
}

/** Edit distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
  }
  return d[a.length][b.length]
}

/** The known name closest to `name` (ignoring case, '-' and '_'), if it is close. */
export function nearest(name: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '')
  let best: string | undefined
  let bestD = 3
  for (const k of known) {
    const dist = distance(norm(name), norm(k))
    if (dist < bestD) { best = k; bestD = dist }
  }
  return best
}

/** Merges partial configs (later wins) over the defaults, checking every key. */
export function resolveConfig(...layers: Array<{ source: string; values: Record<string, unknown> }>): TrainConfig {
  const out: Record<string, unknown> = { ...DEFAULTS, init: { ...DEFAULTS.init } }
  for (const { source, values } of layers) {
    // __proto__, constructor, prototype: never merged, whatever the layer (ts/json-keys.ts)
    const forbidden = forbiddenKey(values)
    if (forbidden !== null) throw new ConfigError(forbiddenKeyMessage(source, forbidden))
    for (const [key, value] of Object.entries(values)) {
      if (!Object.hasOwn(DEFAULTS, key)) {
        const near = nearest(key, Object.keys(DEFAULTS))
        throw new ConfigError(`${source}: unknown key ${key}${near ? ` (did you mean ${near}?)` : ''}`)
      }
      out[key] = checkValue(key as keyof TrainConfig, value, source)
    }
  }
  const c = out as unknown as TrainConfig
  const check = (ok: boolean, message: string): void => {
    if (!ok) throw new ConfigError(message)
  }
  check(c.promptLossWeight <= 1, `promptLossWeight must be in [0, 1], received ${c.promptLossWeight}`)
  check(c.batchSize >= 1, 'batchSize must be ≥ 1')
  check(c.microBatchSize === 0 || c.batchSize % c.microBatchSize === 0,
    `batchSize (${c.batchSize}) must be a multiple of microBatchSize (${c.microBatchSize})`)
  check(c.lr > 0, 'lr must be > 0')
  // The engine's ranges for the optimizer and adapters (native/binding/model.cpp read_optimizer,
  // read_spec), checked here so a bad value is refused before the run starts, not at step 1.
  for (const [key, [lo, hi, open]] of Object.entries(ENGINE_RANGES) as Array<[keyof TrainConfig, [number, number, boolean?]]>) {
    const x = c[key] as number
    if (key.startsWith('lora') && c.loraR === 0) continue
    check(x >= lo && x <= hi && !(open && x === lo), `${key} (--${kebab(key)}) must be in ${open ? '(' : '['}${lo}, ${hi}], ` +
      `the engine's range; received ${x}`)
  }
  check(c.minLrRatio <= 1, 'minLrRatio must be in [0, 1]')
  check(c.valSplit < 1 && c.testSplit < 1 && c.valSplit + c.testSplit < 1, 'valSplit + testSplit must be < 1')
  check(c.maxSteps > 0 || c.epochs > 0, 'set epochs or maxSteps above 0')
  check(c.logEvery >= 1, 'logEvery must be ≥ 1')
  check(c.keepCheckpoints >= 1, 'keepCheckpoints must be ≥ 1')
  check(c.maxLength === 0 || c.maxLength >= 2, 'maxLength must be 0 (the model’s n_positions) or ≥ 2')
  check(c.loraR === 0 || c.model !== null || c.resume !== null, 'LoRA trains adapters on a base model: give --model DIR (loraR > 0 without a model)')
  return c
}

export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`)
}

/** Bytes of a size as transformers' max_shard_size takes it ("5GB" = 5e9, "2GiB" = 2^31, or a plain number); null if malformed. */
export function parseSize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)?\s*$/i.exec(text)
  if (!m) return null
  const unit = (m[2] ?? 'B').toUpperCase()
  const scale: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 }
  const bytes = Number(m[1]) * scale[unit]
  return bytes > 0 ? Math.floor(bytes) : null
}
