/**
 * The training run's configuration: every field with its default and what it means, in one
 * typed object (nanoGPT's way). A JSON config file (--config) and command-line flags
 * (--kebab-case of each key; flags win) are checked against it: unknown keys and wrong
 * types are errors that name the key.
 */
import { MODEL_LIMITS } from '../arch/config-reader'
import { forbiddenKey, forbiddenKeyMessage } from '../json-keys'
import type { FlagGroup } from '../commands/flags'

/**
 * The configuration's type. What each key means, its default, its --help group and how a value
 * is checked: CONFIG_KEYS below, the one table that --help, the flag parser and the --config
 * checks all read.
 */
export interface TrainConfig {
  model: string | null
  data: string | null
  valData: string | null
  format: 'auto' | 'alpaca' | 'prompt-completion' | 'chat'
  template: string
  promptLossWeight: number
  epochs: number
  maxSteps: number
  batchSize: number
  microBatchSize: number
  lr: number
  warmupSteps: number
  lrSchedule: 'cosine' | 'linear' | 'constant'
  minLrRatio: number
  weightDecay: number
  adamBeta1: number
  adamBeta2: number
  adamEps: number
  maxGradNorm: number
  maxLength: number
  packing: boolean
  shuffle: boolean
  groupByLength: boolean
  valSplit: number
  testSplit: number
  seed: number
  dataSeed: number
  evalEvery: number
  saveEvery: number
  keepCheckpoints: number
  earlyStoppingPatience: number
  logEvery: number
  device: 'cpu' | 'cuda' | 'auto'
  precision: 'f32' | 'bf16' | 'auto'
  recompute: 'none' | 'attention' | 'block' | 'auto'
  out: string
  resume: string | null
  overwrite: boolean
  allowDataChange: boolean
  skipInvalid: boolean
  generateEval: number
  maxNewTokens: number
  init: { nLayer: number; nHead: number; nEmbd: number; nPositions: number; nKvHead?: number }
  initArch: 'gpt2' | 'llama' | 'qwen2' | 'qwen3' | 'mistral'
  saveDtype: 'auto' | 'float32' | 'bfloat16' | 'float16'
  maxShardSize: string
  demoRecords: number
  loraR: number
  loraAlpha: number
  loraDropout: number
  loraTargets: string
  useRslora: boolean
}

/**
 * How a key's value is checked (a JSON config file, or a flag's text converted first):
 * path: a non-empty string or null; string: non-empty; number / integer: finite and ≥ 0
 * (plus `range`); enum: one of `values`; size: "5GB"-style; init: the fresh model's sizes.
 */
export type ConfigCheck = 'path' | 'string' | 'number' | 'integer' | 'boolean' | 'enum' | 'size' | 'init'

export interface ConfigKey<V> {
  default: V
  check: ConfigCheck
  /** The allowed values of an enum. */
  values?: readonly string[]
  /**
   * [lo, hi, lo excluded?]: the range the engine checks when it gets the value (the optimizer's
   * at every step, the adapters' when the model is made: native/binding/model.cpp), checked
   * before the run starts instead of at step 1. LoRA's only when loraR > 0.
   */
  range?: [number, number, boolean?]
  /** Where --help lists it (the groups of every command's flags). */
  group: FlagGroup
  /** One line for --help and docs/cli.md. */
  help: string
  /** The value's name in --help (DIR, FILE, N…). */
  placeholder?: string
}

/**
 * Every key of the training run's configuration: default, check, group and meaning, in one
 * typed table (nanoGPT's one object of settings, with the documentation beside each). A JSON
 * config file (--config) and the command line's flags (--kebab-case of each key; flags win)
 * are checked against it: unknown keys and wrong types are errors that name the key.
 */
export const CONFIG_KEYS: { [K in keyof TrainConfig]-?: ConfigKey<TrainConfig[K]> } = {
  // model
  model: { default: null, check: 'path', group: 'model', placeholder: 'DIR',
    help: 'the Hugging Face model directory to fine-tune; none: a fresh model (--init-*)' },
  initArch: { default: 'gpt2', check: 'enum', values: ['gpt2', 'llama', 'qwen2', 'qwen3', 'mistral'], group: 'model', placeholder: 'ARCH',
    help: 'a fresh model\'s architecture: gpt2, llama, qwen2, qwen3, mistral (docs/models.md)' },
  // nKvHead 0: nHead (the Llama family only). The flags are --init-n-layer, --init-n-head, … (one per field).
  init: { default: { nLayer: 4, nHead: 4, nEmbd: 128, nPositions: 256, nKvHead: 0 }, check: 'init', group: 'model',
    help: 'a fresh model\'s sizes {nLayer, nHead, nEmbd, nPositions, nKvHead} (the tokenizer sets vocab_size)' },
  // With loraR > 0 the base (`model`) is frozen and only the adapters train; final/, best/ and
  // the checkpoints are then PEFT adapter directories (docs/lora.md).
  loraR: { default: 0, check: 'integer', range: [0, 65536], group: 'model', placeholder: 'R',
    help: 'LoRA rank; 0: full fine-tuning (docs/lora.md)' },
  loraAlpha: { default: 16, check: 'number', range: [0, 1e30, true], group: 'model', placeholder: 'A',
    help: 'LoRA alpha: the adapters\' output is scaled by alpha / r' },
  loraDropout: { default: 0.05, check: 'number', range: [0, 0.999999], group: 'model', placeholder: 'P',
    help: 'dropout on the adapters\' input during training' },
  loraTargets: { default: 'all-linear', check: 'string', group: 'model', placeholder: 'MODULES',
    help: 'modules with adapters, PEFT\'s names (q_proj,v_proj / c_attn…), or all-linear' },
  useRslora: { default: false, check: 'boolean', group: 'model', help: 'rsLoRA: scale by alpha / √r, stable across ranks' },
  // data
  data: { default: null, check: 'path', group: 'data', placeholder: 'FILE',
    help: 'training data, JSON or JSONL (Alpaca, prompt/completion, chat); none: the demo set' },
  valData: { default: null, check: 'path', group: 'data', placeholder: 'FILE', help: 'validation data; none: --val-split of --data' },
  format: { default: 'auto', check: 'enum', values: ['auto', 'alpaca', 'prompt-completion', 'chat'], group: 'data', placeholder: 'FORMAT',
    help: 'record format of the data files; auto detects it from the first record' },
  template: { default: 'auto', check: 'string', group: 'data', placeholder: 'T',
    help: 'alpaca, phi3, chatml, completion, chat_template, auto, or "{instruction}…{output}"' },
  // Longer prompts are cut from the start (the completion is kept).
  maxLength: { default: 0, check: 'integer', group: 'data', placeholder: 'N',
    help: 'tokens per example (prompt + completion + eos); 0: the model\'s positions' },
  packing: { default: false, check: 'boolean', group: 'data',
    help: 'several examples per row (attention and positions kept apart)' },
  shuffle: { default: true, check: 'boolean', group: 'data', help: 'shuffle each epoch (--no-shuffle: file order)' },
  groupByLength: { default: false, check: 'boolean', group: 'data', help: 'group examples of similar length into the same micro-batches (less padding)' },
  valSplit: { default: 0.05, check: 'number', group: 'data', help: 'fraction of --data held out for validation (without --val-data)' },
  testSplit: { default: 0, check: 'number', group: 'data', help: 'fraction of --data held out for the test' },
  // Fixed apart from `seed`, so runs with different seeds (a sweep) are evaluated on the same held-out records.
  dataSeed: { default: 42, check: 'integer', group: 'data', placeholder: 'N',
    help: 'seed of the train/val/test split (and of the demo set\'s generation)' },
  skipInvalid: { default: false, check: 'boolean', group: 'data', help: 'skip (and count) invalid records instead of stopping at them' },
  demoRecords: { default: 6000, check: 'integer', group: 'data', placeholder: 'N', help: 'records of the built-in demo set (without --data)' },
  // optimisation
  promptLossWeight: { default: 0.1, check: 'number', group: 'optimisation', placeholder: 'λ', // the study's best λ for short completions
    help: 'the loss weight of prompt tokens (completions weigh 1; 0 masks the prompt)' },
  batchSize: { default: 16, check: 'integer', group: 'optimisation', placeholder: 'N', help: 'examples per optimizer step' },
  microBatchSize: { default: 0, check: 'integer', group: 'optimisation', placeholder: 'N',
    help: 'examples per forward/backward (batch-size / this accumulate); 0: --batch-size' },
  lr: { default: 1e-4, check: 'number', range: [0, 1e3, true], group: 'optimisation', help: 'peak learning rate' },
  weightDecay: { default: 0.01, check: 'number', range: [0, 1e3], group: 'optimisation', help: 'AdamW weight decay' },
  adamBeta1: { default: 0.9, check: 'number', range: [0, 0.999999999], group: 'optimisation', help: 'AdamW β1' },
  adamBeta2: { default: 0.999, check: 'number', range: [0, 0.999999999], group: 'optimisation', help: 'AdamW β2' },
  adamEps: { default: 1e-8, check: 'number', range: [1e-30, 1], group: 'optimisation', help: 'AdamW ε' },
  maxGradNorm: { default: 1.0, check: 'number', range: [0, 1e30], group: 'optimisation', help: 'global gradient-norm clipping; 0: off' },
  seed: { default: 42, check: 'integer', group: 'optimisation', placeholder: 'N', help: 'seed of the model initialization and the data order' },
  device: { default: 'auto', check: 'enum', values: ['cpu', 'cuda', 'auto'], group: 'optimisation', placeholder: 'DEV',
    help: 'cpu, cuda or auto (cuda when there is one)' },
  precision: { default: 'auto', check: 'enum', values: ['f32', 'bf16', 'auto'], group: 'optimisation', placeholder: 'P',
    help: 'f32, bf16 (mixed precision), or auto: bf16 on cuda, f32 on cpu' },
  // none | attention (fused, no T×T probabilities) | block (also recompute each layer in the
  // backward) | auto (the first that fits: cpu attention, block; cuda none, attention, block).
  recompute: { default: 'auto', check: 'enum', values: ['none', 'attention', 'block', 'auto'], group: 'optimisation', placeholder: 'R',
    help: 'none, attention, block, or auto: the first that fits (docs/memory.md)' },
  // schedule
  epochs: { default: 3, check: 'integer', group: 'schedule', placeholder: 'N', help: 'passes over the training split (ignored when --max-steps > 0)' },
  maxSteps: { default: 0, check: 'integer', group: 'schedule', placeholder: 'N', help: 'optimizer steps to run; 0: --epochs decide' },
  warmupSteps: { default: 10, check: 'integer', group: 'schedule', placeholder: 'N', help: 'linear warmup from 0 over this many steps' },
  lrSchedule: { default: 'cosine', check: 'enum', values: ['cosine', 'linear', 'constant'], group: 'schedule', placeholder: 'S',
    help: 'decay after warmup: cosine, linear, constant' },
  minLrRatio: { default: 0.1, check: 'number', group: 'schedule', help: 'the learning rate at the last step, as a fraction of --lr' },
  earlyStoppingPatience: { default: 0, check: 'integer', group: 'schedule', placeholder: 'N',
    help: 'stop after this many evaluations without a better validation completion loss; 0: off' },
  // evaluation
  evalEvery: { default: 0, check: 'integer', group: 'evaluation', placeholder: 'N',
    help: 'evaluate on the validation split every N steps; 0: at the end of each epoch' },
  generateEval: { default: 0, check: 'integer', group: 'evaluation', placeholder: 'N',
    help: 'test records to answer by generation at the end (exact match); 0: none' },
  maxNewTokens: { default: 32, check: 'integer', group: 'evaluation', placeholder: 'N', help: 'tokens generated per test answer at most' },
  // output
  out: { default: 'runs/latest', check: 'string', group: 'output', placeholder: 'DIR', help: 'the run directory' },
  // The command line's --resume only, never a config file.
  resume: { default: null, check: 'path', group: 'output', placeholder: 'RUN_DIR',
    help: 'continue a stopped run exactly, with its saved configuration' },
  overwrite: { default: false, check: 'boolean', group: 'output',
    help: 'replace the plwtune run in --out (never a directory that is not a run)' },
  allowDataChange: { default: false, check: 'boolean', group: 'output',
    help: 'with --resume: continue although a data file changed since the run started' },
  saveEvery: { default: 0, check: 'integer', group: 'output', placeholder: 'N', help: 'checkpoint every N steps; 0: only at the end (and on Ctrl-C)' },
  keepCheckpoints: { default: 2, check: 'integer', group: 'output', placeholder: 'N', help: 'checkpoints kept in checkpoints/ (the newest); best/ is kept apart' },
  logEvery: { default: 1, check: 'integer', group: 'output', placeholder: 'N', help: 'log a metrics line every N steps' },
  // Checkpoints for --resume always hold the f32 masters.
  saveDtype: { default: 'auto', check: 'enum', values: ['auto', 'float32', 'bfloat16', 'float16'], group: 'output', placeholder: 'DTYPE',
    help: 'dtype of saved models (final/, best/); auto: the base\'s' },
  maxShardSize: { default: '5GB', check: 'size', group: 'output', placeholder: 'SIZE',
    help: 'shard model files above this size, as transformers writes them ("5GB", "500MB")' },
}

/** Every key's default (CONFIG_KEYS' defaults). */
export const DEFAULTS: TrainConfig = Object.fromEntries(
  Object.entries(CONFIG_KEYS).map(([k, d]) => [k, d.default])) as unknown as TrainConfig

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

/** Sizes of a fresh model: the limits a config.json is held to (ts/arch/config-reader.ts). */
const INIT_LIMITS: Record<keyof TrainConfig['init'], number> = {
  nLayer: MODEL_LIMITS.layers, nHead: MODEL_LIMITS.heads, nEmbd: MODEL_LIMITS.hidden, nPositions: MODEL_LIMITS.positions,
  nKvHead: MODEL_LIMITS.heads,
}

/** [lo, hi, lo excluded?] of the keys the engine range-checks (CONFIG_KEYS' `range`). */
export const ENGINE_RANGES: Partial<Record<keyof TrainConfig, [number, number, boolean?]>> = Object.fromEntries(
  Object.entries(CONFIG_KEYS).filter(([, d]) => d.range !== undefined).map(([k, d]) => [k, d.range]))

/** Checks one key's value as CONFIG_KEYS says; returns it typed. `where` names the source. */
function checkValue(key: keyof TrainConfig, value: unknown, where: string): unknown {
  const spec = CONFIG_KEYS[key] as ConfigKey<unknown>
  const fail = (what: string): never => {
    // JSON.stringify shows Infinity and NaN as null: say what was given
    const shown = typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value)
    throw new ConfigError(`${where}: Expected ${what} for ${key} but received ${shown}`)
  }
  switch (spec.check) {
    case 'init': {
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
    case 'size':
      if (typeof value !== 'string' || parseSize(value) === null) fail('a size such as "5GB" or "500MB"')
      return value
    case 'path':
      if (value !== null && (typeof value !== 'string' || value === '')) fail('a non-empty string or null')
      return value
    case 'enum':
      if (typeof value !== 'string' || !spec.values!.includes(value)) fail(`one of ${spec.values!.join(', ')}`)
      return value
    case 'boolean':
      if (typeof value !== 'boolean') fail('true or false')
      return value
    case 'string':
      if (typeof value !== 'string' || value === '') fail('a non-empty string')
      return value
    case 'number':
    case 'integer': {
      if (typeof value !== 'number' || !Number.isFinite(value)) fail('a number')
      const x = value as number
      if (spec.check === 'integer' && !Number.isInteger(x)) fail('an integer')
      if (x < 0) fail('a number ≥ 0')
      return x
    }
  }
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
