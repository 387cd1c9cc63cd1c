/**
 * The run directory:
 *   config.json            the resolved run configuration (what --resume reads back)
 *   metrics.jsonl          one JSON object per logged optimizer step (eval results on their step)
 *   loss.svg               train and validation loss, redrawn at each evaluation
 *   checkpoints/step-N/    a Hugging Face model directory (config.json, model.safetensors,
 *                          tokenizer files) + optimizer.safetensors (AdamW m and v) +
 *                          trainer_state.json; the newest `keepCheckpoints` are kept
 *   best/                  the model with the best validation completion loss
 *   final/                 the model at the end of the run
 *   .plwtune-run           the marker that says this directory is a plwtune run
 *   data-files.json        size and SHA-256 of the data files (a resume checks them)
 * Every file and directory is written under a temporary name and renamed into place (a rename
 * is atomic; ts/atomic-write.ts), and trainer_state.json is written last, so a crash never
 * leaves a checkpoint that looks complete but is not. A save that fails (a full disk) removes
 * what it wrote, leaves the previous checkpoint as it was, and says which file failed, why, how
 * much the save needs, and which checkpoint --resume continues from.
 *
 * A new run is written only into a new or empty directory; a plwtune run is continued with
 * --resume or replaced with --overwrite; anything else is refused (RunDir.prepareFresh).
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { dtypeBytes, openSafetensors, writeSafetensors } from '../safetensors'
import { WriteError, appendFileRestoring, pidAlive, replaceDir, replaceFile, writeFileSynced } from '../atomic-write'
import { LoadOptions, Model, SaveOptions, loadModel } from '../model'
import { writeTokenizerFiles } from './tokenizer-files'
import { TrainingMeta, writeMeta } from '../model-dir'
import { readJsonObject } from '../json-keys'

export interface TrainerState {
  /** Optimizer steps done. */
  globalStep: number
  /** The next step to run: (epoch, step within the epoch). */
  position: { epoch: number; step: number }
  adamStep: number
  bestValCompletionLoss: number | null
  bestStep: number | null
  evalsWithoutImprovement: number
  tokensSeen: number
  elapsedMs: number
}

export type TokenizerSource = Parameters<typeof writeTokenizerFiles>[1]

/** Size and SHA-256 of a file, read in 1 MiB blocks. */
function fileDigest(file: string): { bytes: number; sha256: string } {
  const hash = crypto.createHash('sha256')
  const fd = fs.openSync(file, 'r')
  const buf = Buffer.alloc(1 << 20)
  let bytes = 0
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0;) {
      hash.update(buf.subarray(0, n))
      bytes += n
    }
  } finally {
    fs.closeSync(fd)
  }
  return { bytes, sha256: hash.digest('hex') }
}

/**
 * Deletes a directory so that a kill midway never leaves something that looks like it: first
 * renamed (atomic) out of the names checkpoints() counts, then removed.
 */
function removeDir(dir: string): void {
  const doomed = path.join(path.dirname(dir), `.${path.basename(dir)}.deleting-${process.pid}`)
  fs.renameSync(dir, doomed)
  fs.rmSync(doomed, { recursive: true, force: true })
}

/** A JSON object of the run, with a message naming it when it is missing, empty or cut short. */
function readRunJson<T>(file: string, what: string): T {
  return readJsonObject(file, what, (m) => new RunDirError(m),
    'the file is damaged (a crash or a full disk while it was written?)') as unknown as T
}

const numel = (ps: Array<{ shape: number[] }>): number => ps.reduce((s, p) => s + p.shape.reduce((a, d) => a * d, 1), 0)

/** The bytes of the tensors `model.save(dir, save)` writes: a LoRA model's adapters (f32 unless told), else every parameter. */
function modelSaveBytes(model: Model, save: SaveOptions): number {
  const dtype = save.dtype !== undefined && save.dtype !== 'auto' ? save.dtype : model.lora ? 'F32' : model.sourceDtype
  return numel(model.lora ? model.adapterParameters() : model.parameters()) * (dtypeBytes(dtype) ?? 4)
}

/** The marker file of a run directory (written first, by create()). */
export const RUN_MARKER = '.plwtune-run'

export class RunDirError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RunDirError'
  }
}

export class RunDir {
  /** Written into every model directory saved (plwtune.json), once the data is prepared. */
  meta: TrainingMeta | null = null

  constructor(readonly dir: string) {}

  get checkpointsDir(): string {
    return path.join(this.dir, 'checkpoints')
  }

  /** When the run was created (its marker's `created`); null for a run from before the marker, or a damaged one. */
  createdAt(): Date | null {
    try {
      const marker = JSON.parse(fs.readFileSync(path.join(this.dir, RUN_MARKER), 'utf8')) as { created?: unknown }
      const at = typeof marker.created === 'string' ? new Date(marker.created) : null
      return at !== null && Number.isFinite(at.getTime()) ? at : null
    } catch {
      return null
    }
  }

  /** Whether `dir` is a plwtune run: its marker, or (runs from before the marker) config.json with metrics or checkpoints. */
  static isRun(dir: string): boolean {
    const has = (f: string) => fs.existsSync(path.join(dir, f))
    return has(RUN_MARKER) || (has('config.json') && (has('metrics.jsonl') || has('checkpoints')))
  }

  /**
   * Before a new run writes into `dir`: a missing or empty directory is fine; a plwtune run is
   * refused (it would mix two runs) unless `overwrite`, which empties it; any other non-empty
   * directory is refused, whatever `overwrite` says — its files are the user's.
   */
  static prepareFresh(dir: string, overwrite: boolean): void {
    if (!fs.existsSync(dir)) return
    if (!fs.statSync(dir).isDirectory()) throw new RunDirError(`--out ${dir}: is a file, not a directory`)
    const entries = fs.readdirSync(dir)
    if (entries.length === 0) return
    if (!RunDir.isRun(dir)) {
      const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? `, … (${entries.length} entries)` : '')
      throw new RunDirError(`--out ${dir} holds files that are not a plwtune run (${shown}); a run is written only into a new or ` +
        'empty directory, so nothing of yours is overwritten: choose another --out')
    }
    if (!overwrite) {
      const done = fs.existsSync(path.join(dir, 'final'))
      throw new RunDirError(`--out ${dir} holds a plwtune run (${done ? 'finished' : 'not finished'}); a new run there would mix ` +
        `the two: --resume ${dir} continues it, --overwrite replaces it, or choose another --out`)
    }
    for (const e of entries) fs.rmSync(path.join(dir, e), { recursive: true, force: true })
  }

  /** The marker first: a directory with anything of a run in it is then a run (--overwrite can replace it). */
  create(config: object, created = new Date()): void {
    this.writeRunFile(() => {
      fs.mkdirSync(this.dir, { recursive: true })
      replaceFile(path.join(this.dir, RUN_MARKER), JSON.stringify({ plwtune: 'run', created: created.toISOString() }) + '\n')
      fs.mkdirSync(this.checkpointsDir, { recursive: true })
      replaceFile(path.join(this.dir, 'config.json'), JSON.stringify(config, null, 2) + '\n')
    })
  }

  readConfig(): Record<string, unknown> {
    const file = path.join(this.dir, 'config.json')
    if (!fs.existsSync(file)) throw new Error(`${this.dir}: no config.json: not a plwtune run directory`)
    return readRunJson<Record<string, unknown>>(file, 'run configuration')
  }

  /** data-files.json: size and SHA-256 of each data file, so a resume can tell they are unchanged. */
  recordDataFiles(files: Array<string | null>): void {
    const record: Record<string, { bytes: number; sha256: string }> = {}
    for (const f of files) if (f !== null) record[f] = fileDigest(f)
    this.writeRunFile(() => replaceFile(path.join(this.dir, 'data-files.json'), JSON.stringify(record, null, 2) + '\n'))
  }

  /** The recorded data files that differ now ("FILE changed (N bytes, was M)"); none when nothing was recorded. */
  changedDataFiles(): string[] {
    const file = path.join(this.dir, 'data-files.json')
    if (!fs.existsSync(file)) return []
    const record = readRunJson<Record<string, { bytes: number; sha256: string }>>(file, 'data file record')
    const out: string[] = []
    for (const [f, then] of Object.entries(record)) {
      if (!fs.existsSync(f)) { out.push(`${f} is gone`); continue }
      const now = fileDigest(f)
      if (now.sha256 !== then.sha256) out.push(`${f} changed (${now.bytes} bytes, was ${then.bytes})`)
    }
    return out
  }

  /** One line of metrics.jsonl; an append that fails (a full disk) cuts the file back, never leaving half a line. */
  appendMetrics(line: object): void {
    this.writeRunFile(() => appendFileRestoring(path.join(this.dir, 'metrics.jsonl'), JSON.stringify(line) + '\n'))
  }

  /**
   * Metrics logged so far (used to redraw the plot after a resume). A last line without its
   * newline that is not JSON (a power cut in the middle of an append) is dropped: the resume
   * logs that step again.
   */
  readMetrics(): Array<Record<string, unknown>> {
    const file = path.join(this.dir, 'metrics.jsonl')
    if (!fs.existsSync(file)) return []
    const text = fs.readFileSync(file, 'utf8')
    const lines = text.split('\n')
    return lines.flatMap((l, i) => {
      if (l.trim() === '') return []
      try {
        return [JSON.parse(l) as Record<string, unknown>]
      } catch (err) {
        if (i === lines.length - 1) return [] // cut short: no newline after it
        throw new RunDirError(`${file}:${i + 1}: not valid JSON (${(err as Error).message})`)
      }
    })
  }

  /** Drops metrics lines past `step`: a resumed run logs those steps again. */
  truncateMetrics(step: number): void {
    const kept = this.readMetrics().filter((m) => (m.step as number) <= step)
    this.writeRunFile(() => replaceFile(path.join(this.dir, 'metrics.jsonl'), kept.map((m) => JSON.stringify(m) + '\n').join('')))
  }

  writePlot(svg: string): void {
    this.writeRunFile(() => replaceFile(path.join(this.dir, 'loss.svg'), svg))
  }

  /** Another file of the run (test_responses.jsonl), replaced atomically. */
  writeFile(name: string, text: string): void {
    this.writeRunFile(() => replaceFile(path.join(this.dir, name), text))
  }

  /**
   * Model files are written with `save` (dtype, shard size); checkpoints always hold the f32
   * masters, so that a resume continues exactly.
   */
  save: SaveOptions = {}

  /**
   * A model directory (HF files + tokenizer) at `name` under the run dir, replaced atomically;
   * `extra` writes more files into it (`extra.bytes` of tensors). A failure leaves the previous
   * directory and removes the new one's files; a full disk is a WriteError naming the file, the
   * size of the save, and the checkpoint a resume continues from.
   */
  async saveModelDir(name: string, model: Model, tokenizer: TokenizerSource,
    extra?: { write: (tmp: string) => void; bytes: number; what: string }, save: SaveOptions = this.save): Promise<string> {
    const target = path.join(this.dir, name)
    const what = extra?.what ?? `${name}/`
    const bytes = modelSaveBytes(model, save) + (extra?.bytes ?? 0)
    try {
      await replaceDir(target, async (tmp) => {
        await model.save(tmp, save)
        writeTokenizerFiles(tmp, tokenizer)
        if (this.meta) writeMeta(tmp, this.meta)
        if (extra) extra.write(tmp)
      }, { what, bytes, dir: path.dirname(target) })
    } catch (err) {
      throw this.withResumeNote(err)
    }
    return target
  }

  /** A write of the run that failed (a full disk), with what the user can do: the checkpoint a resume continues from. */
  private withResumeNote(err: unknown): unknown {
    if (!(err instanceof WriteError)) return err
    const last = this.checkpoints().pop()
    return err.with({ note: last !== undefined
      ? `The last complete checkpoint, ${last.dir} (step ${last.step}), is intact: free some space, then --resume ${this.dir} continues from it`
      : 'No checkpoint was saved yet: free some space and start the run again (--overwrite replaces this one)' })
  }

  /** Writes one of the run's files (`write`), a failure noted as withResumeNote does. */
  private writeRunFile(write: () => void): void {
    try {
      write()
    } catch (err) {
      throw this.withResumeNote(err)
    }
  }

  /** checkpoints/step-N with the optimizer and trainer state; prunes to the newest `keep`. */
  async saveCheckpoint(model: Model, tokenizer: TokenizerSource, state: TrainerState, keep: number): Promise<string> {
    const name = path.join('checkpoints', `step-${state.globalStep}`)
    const trainable = model.parameters().filter((p) => p.trainable)
    const dir = await this.saveModelDir(name, model, tokenizer, { what: `checkpoint step-${state.globalStep}`, bytes: 2 * 4 * numel(trainable),
      write: (tmp) => {
        const moments = trainable.flatMap((p) => [
          { name: `m.${p.name}`, shape: p.shape, data: model.read(p.name, 'm') },
          { name: `v.${p.name}`, shape: p.shape, data: model.read(p.name, 'v') },
        ])
        writeSafetensors(path.join(tmp, 'optimizer.safetensors'), moments)
        writeFileSynced(path.join(tmp, 'trainer_state.json'), JSON.stringify(state, null, 2) + '\n') // last: marks it complete
      } }, { ...this.save, dtype: 'F32' })
    for (const old of this.checkpoints().slice(0, -keep)) removeDir(old.dir)
    return dir
  }

  /**
   * Removes what killed saves left behind: temporary files and directories (`.name.PID.tmp`),
   * replaced ones (`name.old-PID`) and checkpoints half deleted (`.step-N.deleting-PID`) whose
   * process is gone. A directory caught between the two renames of its replacement (`name`
   * gone, a complete `name.old-PID` there: a resume saving again the checkpoint it resumed
   * from, a new best/) is renamed back instead, silently: it is what was there before the save.
   * Called when a run starts or resumes; returns the paths removed.
   */
  cleanLeftovers(): string[] {
    const removed: string[] = []
    for (const parent of [this.dir, this.checkpointsDir]) {
      if (!fs.existsSync(parent)) continue
      for (const name of fs.readdirSync(parent)) {
        const m = /^\..+\.(\d+)\.tmp$/.exec(name) ?? /\.old-(\d+)$/.exec(name) ?? /^\..+\.deleting-(\d+)$/.exec(name)
        if (!m || pidAlive(Number(m[1]))) continue
        const old = /^(.+)\.old-\d+$/.exec(name)
        const complete = (f: string) => fs.existsSync(path.join(parent, name, f))
        if (old && !fs.existsSync(path.join(parent, old[1])) && (parent === this.checkpointsDir ? complete('trainer_state.json')
          : complete('config.json') || complete('adapter_config.json'))) {
          fs.renameSync(path.join(parent, name), path.join(parent, old[1]))
          continue
        }
        fs.rmSync(path.join(parent, name), { recursive: true, force: true })
        removed.push(path.join(parent, name))
      }
    }
    return removed
  }

  /** Complete checkpoints, oldest first. */
  checkpoints(): Array<{ step: number; dir: string }> {
    if (!fs.existsSync(this.checkpointsDir)) return []
    return fs.readdirSync(this.checkpointsDir)
      .map((n) => ({ m: /^step-(\d+)$/.exec(n), dir: path.join(this.checkpointsDir, n) }))
      .filter((e) => e.m !== null && fs.existsSync(path.join(e.dir, 'trainer_state.json')))
      .map((e) => ({ step: Number((e.m as RegExpExecArray)[1]), dir: e.dir }))
      .sort((a, b) => a.step - b.step)
  }

  /** Loads a checkpoint: the model with its AdamW moments and step, and the trainer state. */
  static async loadCheckpoint(dir: string, options: LoadOptions): Promise<{ model: Model; state: TrainerState }> {
    const state = readRunJson<TrainerState>(path.join(dir, 'trainer_state.json'), 'trainer state')
    const model = await loadModel(dir, options)
    const st = openSafetensors(path.join(dir, 'optimizer.safetensors'))
    try {
      for (const p of model.parameters().filter((q) => q.trainable)) {
        model.write(p.name, st.read(`m.${p.name}`), 'm')
        model.write(p.name, st.read(`v.${p.name}`), 'v')
      }
    } finally {
      st.close()
    }
    model.adamStep = state.adamStep
    return { model, state }
  }
}
