/**
 * LoRA settings (docs/lora.md): the rank, alpha, dropout, rsLoRA flag and the linear layers
 * that get adapters, named as PEFT names them (module leaf names: a name adapts that layer
 * in every block, as PEFT's list form of target_modules does).
 */

export interface LoraSettings {
  /** The adapters' rank. */
  r: number
  /** The output is scaled by alpha / r (alpha / √r with rslora). */
  alpha: number
  /** Dropout probability on each adapter's input while training. */
  dropout: number
  /** PEFT module leaf names, expanded (no "all-linear"), in LINEAR_MODULES order. */
  targets: string[]
  /** Rank-stabilized LoRA: scale by alpha / √r. */
  rslora: boolean
}

/**
 * The linear layers of each architecture, by PEFT's leaf name, in block order. GPT-2's
 * "c_proj" is both attn.c_proj and mlp.c_proj (PEFT matches leaf names by suffix). The output
 * head is never one of them (PEFT's "all-linear" leaves it out too).
 */
export const LINEAR_MODULES: Record<'gpt2' | 'llama', string[]> = {
  gpt2: ['c_attn', 'c_proj', 'c_fc'],
  llama: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
}

/** PEFT's shorthand for every linear layer but the output head (case-insensitive, as in PEFT). */
export const ALL_LINEAR = 'all-linear'

/**
 * The leaf names `targets` stands for: "all-linear", a comma-separated list, or an array (of
 * names or "all-linear"). Unknown names are an error listing the valid ones; duplicates go;
 * the result is in LINEAR_MODULES order.
 */
export function resolveLoraTargets(arch: 'gpt2' | 'llama', targets: string | string[]): string[] {
  const valid = LINEAR_MODULES[arch]
  if (valid === undefined) throw new Error(`LoRA targets: unknown architecture ${JSON.stringify(arch)} (gpt2 or llama)`)
  const list = typeof targets === 'string' ? targets.split(',') : targets
  if (!Array.isArray(list) || !list.every((t) => typeof t === 'string')) {
    throw new Error(`LoRA targets: expected a string or a list of strings, received ${JSON.stringify(targets)}`)
  }
  const names = list.map((t) => t.trim()).filter((t) => t !== '')
  if (names.length === 0) {
    throw new Error(`LoRA targets: none given (use "${ALL_LINEAR}" or some of ${valid.join(', ')})`)
  }
  const chosen = new Set<string>()
  const unknown: string[] = []
  for (const n of names) {
    if (n.toLowerCase() === ALL_LINEAR) valid.forEach((v) => chosen.add(v))
    else if (valid.includes(n)) chosen.add(n)
    else unknown.push(n)
  }
  if (unknown.length > 0) {
    const model = arch === 'gpt2' ? 'GPT-2' : 'Llama-family'
    throw new Error(`LoRA targets: ${unknown.map((u) => `"${u}"`).join(', ')} ${unknown.length > 1 ? 'are not linear layers' :
      'is not a linear layer'} of a ${model} model; valid: ${valid.join(', ')} or "${ALL_LINEAR}"`)
  }
  return valid.filter((v) => chosen.has(v))
}

/** The adapters' output scale: alpha / r, or alpha / √r with rsLoRA (PEFT's `scaling`). */
export function loraScaling(s: LoraSettings): number {
  return s.rslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r
}

/** Refuses settings the engine cannot run; the message names `where` and the field. */
export function validateLoraSettings(s: LoraSettings, where: string): void {
  const fail = (field: string, want: string, got: unknown): never => {
    throw new Error(`${where}: ${field} must be ${want}, received ${JSON.stringify(got)}`)
  }
  if (typeof s !== 'object' || s === null) throw new Error(`${where}: LoRA settings must be an object, received ${JSON.stringify(s)}`)
  if (typeof s.r !== 'number' || !Number.isSafeInteger(s.r) || s.r < 1) fail('r', 'a positive integer', s.r)
  if (typeof s.alpha !== 'number' || !Number.isFinite(s.alpha) || !(s.alpha > 0)) fail('alpha', 'a finite number > 0', s.alpha)
  if (typeof s.dropout !== 'number' || !(s.dropout >= 0 && s.dropout < 1)) fail('dropout', 'a number in [0, 1)', s.dropout)
  if (!Array.isArray(s.targets) || s.targets.length === 0) fail('targets', 'a non-empty list of module names', s.targets)
  if (!s.targets.every((t) => typeof t === 'string' && t !== '')) fail('targets', 'a list of module names', s.targets)
  if (new Set(s.targets).size !== s.targets.length) fail('targets', 'a list without duplicates', s.targets)
  if (typeof s.rslora !== 'boolean') fail('rslora', 'true or false', s.rslora)
}
