/** Reading config.json fields with errors that name the file, the field and what was found. */

export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CheckpointError'
  }
}

export class ConfigReader {
  constructor(private readonly json: Record<string, unknown>, private readonly file: string) {}

  private fail(key: string, expected: string): never {
    throw new ConfigError(`${this.file}: field "${key}": expected ${expected}, received ${JSON.stringify(this.json[key])}`)
  }

  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null
  }

  int(key: string, fallback?: number): number {
    const v = this.json[key]
    if ((v === undefined || v === null) && fallback !== undefined) return fallback
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(key, 'a positive integer')
    return v
  }

  num(key: string, fallback?: number): number {
    const v = this.json[key]
    if ((v === undefined || v === null) && fallback !== undefined) return fallback
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, 'a number')
    return v
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.json[key]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'boolean') this.fail(key, 'true or false')
    return v
  }

  str(key: string, fallback?: string): string {
    const v = this.json[key]
    if ((v === undefined || v === null) && fallback !== undefined) return fallback
    if (typeof v !== 'string') this.fail(key, 'a string')
    return v
  }
}
