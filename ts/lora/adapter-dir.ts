/**
 * PEFT's LoRA adapter directory, read and written (docs/lora.md), as peft 0.21's
 * `PeftModel.save_pretrained` / `PeftModel.from_pretrained` do:
 *
 *  - adapter_config.json: LoraConfig's fields, `json.dumps(config, indent=2, sort_keys=True)`
 *    with no final newline. plwtune writes every field peft 0.21 writes, at its default where
 *    plwtune has nothing to say, so the file is what PEFT itself would write for the same
 *    adapter (target_modules sorted; PEFT writes a set in arbitrary order);
 *  - adapter_model.safetensors: `base_model.model.<checkpoint key of the layer>.lora_A.weight`
 *    (r, in) and `….lora_B.weight` (out, r), {"format": "pt"} metadata, sorted by name (the
 *    safetensors writer's order). The adapter name ("default") is not in the keys: PEFT strips
 *    it on save and inserts it on load. GPT-2's Conv1D layers store their weight (in, out), but
 *    PEFT's A and B have these same shapes there (fan_in_fan_out only says how W is stored);
 *  - plwtune_base.json (plwtune only): the base's fingerprint (ts/lora/fingerprint.ts), in a
 *    file of its own because PEFT warns about, and drops, adapter_config.json fields it does not
 *    know.
 *
 * Reading accepts what PEFT writes for plain LoRA on the linear layers plwtune adapts
 * (LINEAR_MODULES), in every block, and refuses by file and field what would compute something
 * else here: other PEFT methods, DoRA and the other LoRA variants, per-layer ranks or alphas,
 * bias training, extra trained modules, a subset of the blocks, initialisations that change the
 * base weights (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA, unless converted on save).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ModelConfig, engineName, fileKey } from '../arch'
import { CheckpointError } from '../checkpoint'
import { SafetensorsError, SafetensorsFile, openSafetensors, writeSafetensorsLazy } from '../safetensors'
import { WriteError, atDestination, fsyncDir, pidAlive, writeFileSynced, writing } from '../atomic-write'
import { BaseFingerprint, parseFingerprint } from './fingerprint'
import { ALL_LINEAR, LINEAR_MODULES, LoraSettings, validateLoraSettings } from './settings'

export const ADAPTER_CONFIG = 'adapter_config.json'
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors'
export const ADAPTER_WEIGHTS_BIN = 'adapter_model.bin'
export const BASE_FINGERPRINT = 'plwtune_base.json'
/** The key prefix PEFT's PeftModel (PeftModelForCausalLM → LoraModel → the transformers model) gives every tensor. */
export const PEFT_PREFIX = 'base_model.model.'
/** The PEFT version whose format this file writes and was checked against (adapter_config.json's peft_version). */
export const PEFT_FORMAT_VERSION = '0.21.0'

/** An adapter directory that cannot be read or written: the message names the file and field or key. */
export class AdapterDirError extends CheckpointError {}

type Arch = 'gpt2' | 'llama'

/** One linear layer that can carry an adapter: its engine name (no ".weight"), leaf name and sizes. */
export interface LinearModule {
  module: string
  leaf: string
  layer: number
  in: number
  out: number
}

/** The linear layers of a model that LoRA can adapt, in block order (the output head is not one). */
export function linearModules(config: ModelConfig): LinearModule[] {
  const out: LinearModule[] = []
  if (config.arch === 'gpt2') {
    const C = config.nEmbd
    for (let l = 0; l < config.nLayer; l++) {
      const h = `h.${l}.`
      out.push({ module: `${h}attn.c_attn`, leaf: 'c_attn', layer: l, in: C, out: 3 * C })
      out.push({ module: `${h}attn.c_proj`, leaf: 'c_proj', layer: l, in: C, out: C })
      out.push({ module: `${h}mlp.c_fc`, leaf: 'c_fc', layer: l, in: C, out: 4 * C })
      out.push({ module: `${h}mlp.c_proj`, leaf: 'c_proj', layer: l, in: 4 * C, out: C })
    }
    return out
  }
  const C = config.hiddenSize, Q = config.numHeads * config.headDim, KV = config.numKvHeads * config.headDim
  const F = config.intermediateSize
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}.`
    out.push({ module: `${p}self_attn.q_proj`, leaf: 'q_proj', layer: l, in: C, out: Q })
    out.push({ module: `${p}self_attn.k_proj`, leaf: 'k_proj', layer: l, in: C, out: KV })
    out.push({ module: `${p}self_attn.v_proj`, leaf: 'v_proj', layer: l, in: C, out: KV })
    out.push({ module: `${p}self_attn.o_proj`, leaf: 'o_proj', layer: l, in: Q, out: C })
    out.push({ module: `${p}mlp.gate_proj`, leaf: 'gate_proj', layer: l, in: C, out: F })
    out.push({ module: `${p}mlp.up_proj`, leaf: 'up_proj', layer: l, in: C, out: F })
    out.push({ module: `${p}mlp.down_proj`, leaf: 'down_proj', layer: l, in: F, out: C })
  }
  return out
}

/** The checkpoint's module path (transformers' name, what PEFT matches target_modules against) of an engine module. */
function moduleFileKey(config: ModelConfig, module: string): string {
  return fileKey(config, `${module}.weight`).replace(/\.weight$/, '')
}

/** adapter_model.safetensors' key for an engine tensor name (`<module>.lora_A.weight`). */
export function adapterFileKey(config: ModelConfig, name: string): string {
  return PEFT_PREFIX + fileKey(config, name)
}

// ---------------------------------------------------------------------------------------------
// JSON as Python's json.dumps(obj, indent=2, sort_keys=True) writes it

/** A number Python holds as a float (written 0.0, 1e-05, 0.05 — repr's spelling). */
class PyFloat {
  constructor(readonly value: number) {}
}

function pyFloatRepr(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`${x} has no JSON spelling`)
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0'
  const [mantissa, expText] = x.toExponential().split('e') // shortest round-trip digits, as repr
  const exp = Number(expText)
  if (exp < -4 || exp >= 16) return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`
  const s = String(x) // positional in this range, same digits
  return /[.e]/.test(s) ? s : `${s}.0`
}

function pyJsonString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

function pyJson(v: unknown, indent = ''): string {
  if (v === null) return 'null'
  if (v instanceof PyFloat) return pyFloatRepr(v.value)
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : pyFloatRepr(v)
  if (typeof v === 'string') return pyJsonString(v)
  const inner = indent + '  '
  if (Array.isArray(v)) {
    return v.length === 0 ? '[]' : `[\n${v.map((x) => inner + pyJson(x, inner)).join(',\n')}\n${indent}]`
  }
  const keys = Object.keys(v as object).sort()
  if (keys.length === 0) return '{}'
  return `{\n${keys.map((k) => `${inner}${pyJsonString(k)}: ${pyJson((v as Record<string, unknown>)[k], inner)}`).join(',\n')}\n${indent}}`
}

/**
 * adapter_config.json's fields for `settings`: every field of peft 0.21's LoraConfig (and
 * PeftConfig), with plwtune's values where it has them and PEFT's defaults elsewhere.
 */
export function adapterConfigJson(arch: Arch, settings: LoraSettings, baseModel: string | null): Record<string, unknown> {
  return {
    alora_invocation_tokens: null,
    alpha_pattern: {},
    arrow_config: null,
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    corda_config: null,
    ensure_weight_tying: false,
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: arch === 'gpt2', // Conv1D stores W as (in, out)
    inference_mode: true,
    init_lora_weights: true,
    kasa_config: null,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: settings.alpha,
    lora_bias: false,
    lora_dropout: new PyFloat(settings.dropout),
    lora_ga_config: null,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    monteclora_config: null,
    peft_type: 'LORA',
    peft_version: PEFT_FORMAT_VERSION,
    qalora_group_size: 16,
    r: settings.r,
    rank_pattern: {},
    revision: null,
    target_modules: [...settings.targets].sort(),
    target_parameters: null,
    task_type: 'CAUSAL_LM',
    trainable_token_indices: null,
    use_bdlora: null,
    use_dora: false,
    use_qalora: false,
    use_rslora: settings.rslora,
    velora_config: null,
  }
}

// ---------------------------------------------------------------------------------------------
// writing

export interface WriteAdapterOptions {
  arch: Arch
  config: ModelConfig
  settings: LoraSettings
  /** The base model directory (written absolute as base_model_name_or_path). */
  baseModel: string
  /** The base's fingerprint, written to plwtune_base.json (a previous one is removed when absent). */
  base?: BaseFingerprint
  /** The adapter tensors by engine name (`<module>.lora_A.weight` (r, in), `<module>.lora_B.weight` (out, r)). */
  tensors: Array<{ name: string; shape: number[] }>
  read: (name: string) => Float32Array
  /** The dtype stored (converted from float32). Default F32. */
  dtype?: 'F32' | 'F16' | 'BF16'
}

const TEMP_NAME = /^\.(adapter_config\.json|adapter_model\.safetensors|plwtune_base\.json)\.(\d+)\.tmp$/

/** The adapter tensors a model with these settings has: names (engine) and shapes, in block order. */
export function adapterTensors(config: ModelConfig, settings: Pick<LoraSettings, 'r' | 'targets'>): Array<{ name: string; shape: number[] }> {
  return linearModules(config).filter((m) => settings.targets.includes(m.leaf)).flatMap((m) => [
    { name: `${m.module}.lora_A.weight`, shape: [settings.r, m.in] },
    { name: `${m.module}.lora_B.weight`, shape: [m.out, settings.r] },
  ])
}

/**
 * Writes a PEFT adapter directory (created if needed): adapter_model.safetensors,
 * plwtune_base.json when `base` is given, adapter_config.json — each under a temporary name,
 * fsynced, then renamed into place, adapter_config.json last (it is what makes a directory an
 * adapter directory). The tensors given must be exactly the adapters of `settings` on `config`.
 * A failure removes the temporary files and leaves a previous adapter as it was; a file system
 * error (a full disk) is a WriteError naming the file and the bytes the adapter needs.
 */
export function writeAdapterDir(dir: string, o: WriteAdapterOptions): void {
  const { config, settings } = o
  if (o.arch !== config.arch) throw new AdapterDirError(`writeAdapterDir: arch "${o.arch}" but the config is a ${config.arch} config`)
  validateLoraSettings(settings, `${path.join(dir, ADAPTER_CONFIG)}`)
  const unknown = settings.targets.filter((t) => !LINEAR_MODULES[o.arch].includes(t))
  if (unknown.length) {
    throw new AdapterDirError(`${dir}: targets ${unknown.join(', ')} are not linear layers of this model (${LINEAR_MODULES[o.arch].join(', ')})`)
  }
  const expected = new Map(adapterTensors(config, settings).map((t) => [t.name, t.shape]))
  const given = new Set<string>()
  for (const t of o.tensors) {
    const shape = expected.get(t.name)
    if (!shape) throw new AdapterDirError(`${dir}: tensor "${t.name}" is not an adapter of these settings (r ${settings.r}, ${settings.targets.join(',')})`)
    if (given.has(t.name)) throw new AdapterDirError(`${dir}: tensor "${t.name}" is given twice`)
    if (t.shape.join(',') !== shape.join(',')) throw new AdapterDirError(`${dir}: tensor "${t.name}" has shape [${t.shape}], expected [${shape}]`)
    given.add(t.name)
  }
  const missing = [...expected.keys()].filter((n) => !given.has(n))
  if (missing.length) throw new AdapterDirError(`${dir}: no tensor given for ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? `, … (${missing.length})` : ''}`)

  writing(dir, () => fs.mkdirSync(dir, { recursive: true }))
  for (const f of fs.readdirSync(dir)) {
    const m = TEMP_NAME.exec(f)
    if (m && Number(m[2]) !== process.pid && !pidAlive(Number(m[2]))) fs.rmSync(path.join(dir, f), { force: true })
  }
  const temp = (file: string): string => path.join(dir, `.${file}.${process.pid}.tmp`)
  const files = [ADAPTER_WEIGHTS, ...(o.base ? [BASE_FINGERPRINT] : []), ADAPTER_CONFIG]
  const dtype = o.dtype ?? 'F32'
  const bytes = o.tensors.reduce((s, t) => s + t.shape.reduce((a, d) => a * d, 1), 0) * (dtype === 'F32' ? 4 : 2)
  /** Writes (or renames) `file` under its temporary name; a failure names it at its destination. */
  const step = (file: string, write: (tmp: string) => void): void => {
    try {
      write(temp(file))
    } catch (err) {
      throw atDestination(err, temp(file), path.join(dir, file))
    }
  }
  try {
    step(ADAPTER_WEIGHTS, (tmp) => writeSafetensorsLazy(tmp, o.tensors.map((t) => ({
      name: adapterFileKey(config, t.name), shape: t.shape, read: () => o.read(t.name),
    })), { dtype, metadata: { format: 'pt' } }))
    if (o.base) step(BASE_FINGERPRINT, (tmp) => writeFileSynced(tmp, JSON.stringify(o.base, null, 2) + '\n'))
    step(ADAPTER_CONFIG, (tmp) => writeFileSynced(tmp, pyJson(adapterConfigJson(o.arch, settings, path.resolve(o.baseModel)))))
    fsyncDir(dir)
    for (const f of files) step(f, (tmp) => fs.renameSync(tmp, path.join(dir, f)))
  } catch (err) {
    for (const f of files) fs.rmSync(temp(f), { force: true })
    if (err instanceof SafetensorsError) throw new AdapterDirError(err.message)
    if (err instanceof WriteError) throw err.with({ save: { what: 'the adapter', bytes, dir } })
    throw err
  }
  // A fingerprint of an earlier save would now describe the wrong base.
  if (!o.base) fs.rmSync(path.join(dir, BASE_FINGERPRINT), { force: true })
  fsyncDir(dir)
}

// ---------------------------------------------------------------------------------------------
// reading

/** True when `dir` holds an adapter_config.json (a PEFT adapter directory). */
export function isAdapterDir(dir: string): boolean {
  return fs.existsSync(path.join(dir, ADAPTER_CONFIG))
}

export interface AdapterDir {
  settings: LoraSettings
  /** base_model_name_or_path, or null when absent or empty. */
  baseModel: string | null
  /** plwtune_base.json, or null (an adapter made by PEFT has none). */
  base: BaseFingerprint | null
  /** By engine name (`<module>.lora_A.weight`, `<module>.lora_B.weight`), as float32. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>
}

/** PEFT's target_modules when none are given (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
const PEFT_DEFAULT_TARGETS: Record<Arch, string[]> = { gpt2: ['c_attn'], llama: ['q_proj', 'v_proj'] }

/** Init values that only set A and B (the base is untouched); the others change W or the forward. */
const PLAIN_INITS = new Set<unknown>([true, false, 'gaussian', 'eva', 'orthogonal'])

/** A JSON value for a message, cut short (an expanded target_modules lists every layer). */
function brief(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 120 ? `${s.slice(0, 117)}...` : s
}

const isEmpty = (v: unknown): boolean =>
  v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0) ||
  (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0)

/**
 * Reads a LoRA adapter directory written by plwtune or by PEFT (`save_pretrained` with
 * safetensors) for the model `config`, checking everything plwtune needs to run it the way
 * PEFT would: fields it does not support are refused by name, missing fields take PEFT's
 * defaults (r 8, lora_alpha 8, lora_dropout 0, use_rslora false), and the tensors must be an
 * A and a B of the right shapes for every layer target_modules selects, and nothing else.
 */
export function readAdapterDir(dir: string, arch: Arch, config: ModelConfig): AdapterDir {
  if (arch !== config.arch) throw new AdapterDirError(`readAdapterDir: arch "${arch}" but the config is a ${config.arch} config`)
  const cfgFile = path.join(dir, ADAPTER_CONFIG)
  if (!fs.existsSync(cfgFile)) throw new AdapterDirError(`${dir}: no ${ADAPTER_CONFIG} (not a PEFT adapter directory)`)
  let json: Record<string, unknown>
  try {
    json = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>
  } catch (err) {
    throw new AdapterDirError(`${cfgFile}: not valid JSON (${(err as Error).message})`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new AdapterDirError(`${cfgFile}: expected a JSON object`)
  const refuse = (field: string, why: string): never => {
    throw new AdapterDirError(`${cfgFile}: "${field}" ${field in json ? `is ${brief(json[field])}` : 'is missing'}: ${why}`)
  }

  // What kind of adapter: plain LoRA on a causal LM.
  if (json.peft_type !== 'LORA') refuse('peft_type', 'plwtune runs LoRA adapters only ("LORA")')
  if (json.task_type !== undefined && json.task_type !== null && json.task_type !== 'CAUSAL_LM') {
    refuse('task_type', 'plwtune runs causal language models ("CAUSAL_LM")')
  }
  const unsupported: Array<[string, string]> = [
    ['use_dora', 'DoRA (magnitude vectors) is not supported; merge it with PEFT (merge_and_unload) and load the merged model'],
    ['rank_pattern', 'per-layer ranks are not supported (one r for every layer)'],
    ['alpha_pattern', 'per-layer alphas are not supported (one lora_alpha for every layer)'],
    ['modules_to_save', 'fully trained extra modules are not supported (only LoRA matrices)'],
    ['layers_to_transform', 'adapters on some blocks only are not supported (plwtune adapts every block)'],
    ['layer_replication', 'layer replication is not supported'],
    ['lora_bias', 'a trained bias on lora_B is not supported'],
    ['target_parameters', 'LoRA on parameters (not modules) is not supported'],
    ['trainable_token_indices', 'trainable tokens are not supported'],
    ['alora_invocation_tokens', 'activated LoRA (aLoRA) is not supported'],
    ['use_qalora', 'QA-LoRA is not supported'],
    ['use_bdlora', 'block-diagonal LoRA is not supported'],
    ['velora_config', 'VeLoRA is not supported'],
    ['kasa_config', 'KaSA (which changes the base weights) is not supported'],
    ['monteclora_config', 'MonteCLoRA is not supported'],
    ['arrow_config', 'Arrow routing is not supported'],
    ['megatron_config', 'Megatron parallel layers are not supported'],
  ]
  for (const [field, why] of unsupported) if (!isEmpty(json[field])) refuse(field, why)
  if (json.bias !== undefined && json.bias !== 'none') refuse('bias', 'trained biases are not supported ("none" only)')
  if (json.init_lora_weights !== undefined && !PLAIN_INITS.has(json.init_lora_weights)) {
    refuse('init_lora_weights', 'this initialisation changes the base weights or the layer (save it with PEFT\'s ' +
      'path_initial_model_for_weight_conversion, which makes a plain LoRA adapter, or merge it with merge_and_unload)')
  }

  // The numbers, with PEFT's defaults.
  const r = json.r ?? 8
  if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 1) refuse('r', 'expected a positive integer')
  const alpha = json.lora_alpha ?? 8
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || !(alpha > 0)) refuse('lora_alpha', 'expected a number > 0')
  const dropout = json.lora_dropout ?? 0
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) refuse('lora_dropout', 'expected a number in [0, 1)')
  const rslora = json.use_rslora ?? false
  if (typeof rslora !== 'boolean') refuse('use_rslora', 'expected true or false')

  // Which modules PEFT adapts: target_modules matched against the model's module names
  // (a name equal to the module path or ending it after a dot), minus exclude_modules.
  const modules = linearModules(config)
  const pathOf = new Map(modules.map((m) => [m.module, moduleFileKey(config, m.module)]))
  const tm = json.target_modules ?? null
  let matches: (p: string) => boolean
  if (tm === null) {
    const names = PEFT_DEFAULT_TARGETS[arch]
    matches = (p) => names.some((t) => p === t || p.endsWith(`.${t}`))
  } else if (typeof tm === 'string') {
    if (tm.toLowerCase() !== ALL_LINEAR) {
      refuse('target_modules', `a regular expression is not supported; give a list of module names (${LINEAR_MODULES[arch].join(', ')}) or "${ALL_LINEAR}"`)
    }
    matches = () => true
  } else if (Array.isArray(tm) && tm.every((t) => typeof t === 'string')) {
    const names = tm as string[]
    matches = (p) => names.some((t) => p === t || p.endsWith(`.${t}`))
  } else {
    return refuse('target_modules', 'expected a list of module names, "all-linear" or null')
  }
  const ex = json.exclude_modules ?? null
  if (ex !== null && !(Array.isArray(ex) && ex.every((t) => typeof t === 'string'))) {
    refuse('exclude_modules', 'a regular expression is not supported (a list of module names is)')
  }
  const excluded = (p: string): boolean => Array.isArray(ex) && (ex as string[]).some((t) => p === t || p.endsWith(`.${t}`))
  const adapted = new Set(modules.filter((m) => matches(pathOf.get(m.module)!) && !excluded(pathOf.get(m.module)!)).map((m) => m.module))
  const targets: string[] = []
  for (const leaf of LINEAR_MODULES[arch]) {
    const all = modules.filter((m) => m.leaf === leaf)
    const on = all.filter((m) => adapted.has(m.module))
    if (on.length === 0) continue
    if (on.length !== all.length) {
      const off = all.find((m) => !adapted.has(m.module))!
      throw new AdapterDirError(`${cfgFile}: target_modules ${brief(tm)}${ex ? ` with exclude_modules ${brief(ex)}` : ''} ` +
        `adapts ${pathOf.get(on[0].module)} but not ${pathOf.get(off.module)}: plwtune adapts a module name ("${leaf}") in every ` +
        'block or in none')
    }
    targets.push(leaf)
  }
  if (targets.length === 0) {
    refuse('target_modules', `it selects none of this model's linear layers (${LINEAR_MODULES[arch].join(', ')})`)
  }
  const settings: LoraSettings = { r: r as number, alpha: alpha as number, dropout: dropout as number, targets, rslora: rslora as boolean }

  // The tensors.
  const weights = path.join(dir, ADAPTER_WEIGHTS)
  if (!fs.existsSync(weights)) {
    if (fs.existsSync(path.join(dir, ADAPTER_WEIGHTS_BIN))) {
      throw new AdapterDirError(`${dir}: ${ADAPTER_WEIGHTS_BIN} (a pickle) is not read: save the adapter with ` +
        '`model.save_pretrained(dir, safe_serialization=True)` to get adapter_model.safetensors')
    }
    throw new AdapterDirError(`${dir}: no ${ADAPTER_WEIGHTS}`)
  }
  let st: SafetensorsFile
  try {
    st = openSafetensors(weights)
  } catch (err) {
    if (err instanceof SafetensorsError) throw new AdapterDirError(err.message)
    throw err
  }
  try {
    const byModule = new Map<string, { A?: string; B?: string }>()
    const byPath = new Map(modules.map((m) => [pathOf.get(m.module)!, m]))
    let adapterName: string | undefined
    for (const key of st.tensors.keys()) {
      const m = /^(.+)\.(lora_A|lora_B)(?:\.([^.]+))?\.weight$/.exec(key)
      if (!m) {
        throw new AdapterDirError(`${weights}: tensor "${key}" is not a LoRA matrix (…lora_A.weight or …lora_B.weight): ` +
          'plwtune applies LoRA matrices only (no trained embeddings, biases, DoRA magnitudes or saved modules)')
      }
      const [, prefixed, which, name] = m
      if (adapterName === undefined) adapterName = name ?? ''
      else if ((name ?? '') !== adapterName) {
        throw new AdapterDirError(`${weights}: tensor "${key}" names adapter ${JSON.stringify(name ?? '')} but others name ` +
          `${JSON.stringify(adapterName)}: one adapter per directory`)
      }
      const filePath = prefixed.startsWith(PEFT_PREFIX) ? prefixed.slice(PEFT_PREFIX.length) : prefixed
      // The engine's module for this checkpoint path (GPT-2 files may lack "transformer.").
      const engine = engineName(config, `${filePath}.weight`)
      const lin = byPath.get(filePath) ?? (engine !== null ? modules.find((x) => x.module === engine.replace(/\.weight$/, '')) : undefined)
      if (!lin) {
        throw new AdapterDirError(`${weights}: tensor "${key}" adapts "${filePath}", which is not one of the linear layers ` +
          `plwtune adapts (${LINEAR_MODULES[arch].join(', ')} in each block; not the embeddings or the output head)`)
      }
      if (!adapted.has(lin.module)) {
        throw new AdapterDirError(`${weights}: tensor "${key}" adapts "${filePath}", which target_modules ` +
          `${brief(tm)} in ${ADAPTER_CONFIG} does not select`)
      }
      const entry = byModule.get(lin.module) ?? {}
      if (entry[which === 'lora_A' ? 'A' : 'B'] !== undefined) {
        throw new AdapterDirError(`${weights}: tensors "${entry[which === 'lora_A' ? 'A' : 'B']}" and "${key}" are the same matrix`)
      }
      entry[which === 'lora_A' ? 'A' : 'B'] = key
      byModule.set(lin.module, entry)
    }
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>()
    for (const lin of modules) {
      if (!adapted.has(lin.module)) continue
      const entry = byModule.get(lin.module)
      const p = pathOf.get(lin.module)!
      if (!entry) {
        throw new AdapterDirError(`${weights}: no lora_A/lora_B for "${p}", which target_modules ${brief(tm)} selects`)
      }
      if (entry.A === undefined || entry.B === undefined) {
        const has = entry.A ?? entry.B
        throw new AdapterDirError(`${weights}: tensor "${has}" has no ${entry.A === undefined ? 'lora_A' : 'lora_B'} partner`)
      }
      for (const [key, want, what] of [[entry.A, [r, lin.in], `(r, in) = (${r}, ${lin.in})`],
        [entry.B, [lin.out, r], `(out, r) = (${lin.out}, ${r})`]] as const) {
        const t = st.tensors.get(key)!
        if (t.shape.join(',') !== want.join(',')) {
          throw new AdapterDirError(`${weights}: tensor "${key}" has shape [${t.shape}], expected [${want}] ${what} ` +
            `(r from ${ADAPTER_CONFIG}, sizes from the base's config.json)`)
        }
      }
      const read = (key: string): Float32Array => {
        try {
          return st.read(key)
        } catch (err) {
          if (err instanceof SafetensorsError) throw new AdapterDirError(err.message)
          throw err
        }
      }
      tensors.set(`${lin.module}.lora_A.weight`, { shape: [r as number, lin.in], data: read(entry.A) })
      tensors.set(`${lin.module}.lora_B.weight`, { shape: [lin.out, r as number], data: read(entry.B) })
    }

    const baseFile = path.join(dir, BASE_FINGERPRINT)
    let base: BaseFingerprint | null = null
    if (fs.existsSync(baseFile)) {
      let parsed: unknown
      try {
        parsed = JSON.parse(fs.readFileSync(baseFile, 'utf8'))
      } catch (err) {
        throw new AdapterDirError(`${baseFile}: not valid JSON (${(err as Error).message})`)
      }
      try {
        base = parseFingerprint(parsed, baseFile)
      } catch (err) {
        throw new AdapterDirError((err as Error).message)
      }
    }
    const bm = json.base_model_name_or_path
    const baseModel = typeof bm === 'string' && bm !== '' ? bm : null
    return { settings, baseModel, base, tensors }
  } finally {
    st.close()
  }
}
