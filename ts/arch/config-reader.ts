/** Reading config.json fields with errors that name the file, the field and what was found. */
import { FORBIDDEN_KEYS, forbiddenKeyMessage } from '../json-keys'

export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CheckpointError'
  }
}

/**
 * The largest sizes plwtune accepts in a config.json (and for a fresh model's --init-* sizes).
 * Each is far above every released model's (contexts up to 10,485,760 positions, vocabularies
 * up to 262,144, hidden sizes up to 16,384, MLPs up to 53,248, 126 layers, 128 heads) and well
 * inside the engine's int32 dimensions and token ids (native/engine/spec.h; the binding takes
 * at most 1e9). A value past them is a damaged or hostile file: it is refused here, naming the
 * field and the limit, instead of ending in a memory bill of millions of MiB. docs/reliability.md
 * lists them.
 */
export const MODEL_LIMITS = {
  /** n_positions, max_position_embeddings, sliding_window, original_max_position_embeddings (2^24). */
  positions: 16_777_216,
  /** vocab_size (2^24: ids stay exact in an f32, and far inside int32). */
  vocab: 16_777_216,
  /** n_embd, hidden_size (2^16). */
  hidden: 65_536,
  /** n_inner, intermediate_size (2^20). */
  intermediate: 1_048_576,
  /** n_layer, num_hidden_layers. */
  layers: 4096,
  /** n_head, num_attention_heads, num_key_value_heads. */
  heads: 4096,
  /** head_dim. */
  headDim: 4096,
} as const

export class ConfigReader {
  constructor(private readonly json: Record<string, unknown>, private readonly file: string) {
    // Own keys only, and none that reaches a prototype (ts/json-keys.ts).
    for (const key of Object.keys(json)) {
      if (FORBIDDEN_KEYS.includes(key)) throw new ConfigError(forbiddenKeyMessage(file, key))
    }
  }

  /** The field's own value (never one inherited from Object.prototype). */
  private get(key: string): unknown {
    return Object.hasOwn(this.json, key) ? this.json[key] : undefined
  }

  private fail(key: string, expected: string): never {
    throw new ConfigError(`${this.file}: field "${key}": expected ${expected}, received ${JSON.stringify(this.get(key))}`)
  }

  has(key: string): boolean {
    return this.get(key) !== undefined && this.get(key) !== null
  }

  /** A positive integer; `max` (one of MODEL_LIMITS) refuses a larger one, naming the limit. */
  int(key: string, fallback?: number, max?: number): number {
    const v = this.get(key)
    if ((v === undefined || v === null) && fallback !== undefined) return fallback
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(key, 'a positive integer')
    if (max !== undefined && v > max) {
      throw new ConfigError(`${this.file}: field "${key}": ${v} is more than plwtune's limit of ${max} ` +
        '(far above any released model; see docs/reliability.md)')
    }
    return v
  }

  num(key: string, fallback?: number): number {
    const v = this.get(key)
    if ((v === undefined || v === null) && fallback !== undefined) return fallback
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, 'a number')
    return v
  }

  /** A number in [lo, hi] (the engine's range for it). */
  numIn(key: string, lo: number, hi: number, fallback?: number): number {
    const v = this.num(key, fallback)
    if (!(v >= lo && v <= hi)) this.fail(key, `a number in [${lo}, ${hi}]`)
    return v
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.get(key)
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'boolean') this.fail(key, 'true or false')
    return v
  }

  str(key: string, fallback?: string): string {
    const v = this.get(key)
    if ((v === undefined || v === null) && fallback !== undefined) return fallback
    if (typeof v !== 'string') this.fail(key, 'a string')
    return v
  }
}
