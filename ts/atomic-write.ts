/**
 * How plwtune writes the files it saves (models, checkpoints, adapters, merged models, the run's
 * config, metrics and plot), so that a failure — a full disk above all — leaves what was there
 * before, frees what the failed save took, and says what failed:
 *
 *  - writeAll / writeFileSynced / appendFileRestoring: bytes to disk. An errno failure (ENOSPC,
 *    EDQUOT, EIO, EACCES, EROFS …) becomes a WriteError naming the file and the reason; Node's
 *    own error says only "ENOSPC: no space left on device, write", not which file.
 *  - replaceFile: one file, written under `.NAME.PID.tmp` beside it, fsynced and renamed into
 *    place; on failure the temporary file is removed and the previous file is untouched.
 *  - replaceDir: a whole directory (a checkpoint, final/, best/, a merged model), the same way:
 *    `.NAME.PID.tmp` is filled, fsynced, and swapped in (the previous one renamed to
 *    `NAME.old-PID`, then removed). On failure the temporary directory is removed, the previous
 *    directory is as it was, and the WriteError adds how much the save needs (the bytes of the
 *    tensors it was writing) and how much is free there now.
 * A WriteError names the file at its destination (`checkpoints/step-4/model.safetensors`), not
 * the temporary name it had while written. Errors that are not the file system's (a tensor
 * that cannot be read, a wrong shape) pass through unchanged, after the same clean-up.
 *
 * Test hook: a write budget. setWriteBudgetForTests(bytes), or PLWTUNE_TEST_WRITE_BUDGET=bytes
 * in the environment of a child process, lets every write through writeAll go through until
 * that many bytes are written, then fails the next one, partly done, with ENOSPC — a disk that
 * fills up in the middle of a file, as a real one does (freed space is not given back).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

/** What a directory save writes: a description, the bytes of its tensors, and the directory it needs the space in. */
export interface SaveInfo {
  /** What is being saved, as a message names it: "checkpoint step-4", "the final model", "the merged model". */
  what: string
  /** The bytes of the tensors the whole save writes (small JSON and tokenizer files not counted). */
  bytes: number
  /** Where the space is needed (the directory that will hold the save). */
  dir: string
}

/** A file that could not be written: the file (at its destination), the system's reason, and the save it belonged to. */
export class WriteError extends Error {
  constructor(
    /** The file (or directory) that failed, at the name it would have had once in place. */
    readonly file: string,
    /** The errno code (ENOSPC, EDQUOT, EIO, …). */
    readonly code: string,
    /** The system's words for it ("no space left on device"). */
    readonly reason: string,
    readonly save: SaveInfo | null = null,
    /** What the caller adds: the checkpoint that is still good, how to continue. */
    readonly note: string = '',
  ) {
    super(WriteError.compose(file, code, reason, save, note))
    this.name = 'WriteError'
  }

  /** The same failure with the save it belonged to and a note (the outermost save's size wins). */
  with(o: { save?: SaveInfo | null; note?: string; file?: string }): WriteError {
    return new WriteError(o.file ?? this.file, this.code, this.reason, o.save !== undefined ? o.save : this.save, o.note ?? this.note)
  }

  private static compose(file: string, code: string, reason: string, save: SaveInfo | null, note: string): string {
    let m = `cannot write ${file}: ${reason} (${code})`
    if (save) {
      const free = freeBytes(save.dir)
      m += `. Saving ${save.what} needs about ${formatBytes(save.bytes)} (${save.bytes} bytes of tensors) in ${save.dir}` +
        `${free !== null ? `, which has ${formatBytes(free)} free now` : ''}; the partly written files were removed`
    }
    return note ? `${m}. ${note}` : m
  }
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB']
  let u = 0, x = n
  while (x >= 1024 && u < units.length - 1) { x /= 1024; u++ }
  return u === 0 ? `${n} bytes` : `${x.toFixed(1)} ${units[u]}`
}

/** Bytes available to this user on the file system holding `dir` (its nearest existing parent), or null. */
function freeBytes(dir: string): number | null {
  try {
    let at = path.resolve(dir)
    while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at)
    const s = fs.statfsSync(at)
    return Number(s.bavail) * Number(s.bsize)
  } catch {
    return null
  }
}

/** A Node system error (fs calls throw these: code "ENOSPC", syscall "write"). By shape: errors from another realm (jest's) fail instanceof. */
function isSystemError(err: unknown): err is NodeJS.ErrnoException & { code: string } {
  const e = err as NodeJS.ErrnoException | null
  return typeof e === 'object' && e !== null && typeof e.code === 'string' && typeof e.syscall === 'string'
}

/** "ENOSPC: no space left on device, write" → "no space left on device". */
function reasonOf(err: NodeJS.ErrnoException & { code: string }): string {
  const m = /^[A-Z0-9_]+: (.+?), [a-z_]+(?: '.*)?$/s.exec(err.message)
  return m ? m[1] : err.message
}

/** `err` as a WriteError naming `file` when it is a system error; other errors unchanged. */
export function asWriteError(err: unknown, file: string): unknown {
  if (err instanceof WriteError || !isSystemError(err)) return err
  return new WriteError(file, err.code, reasonOf(err))
}

/** `err` as asWriteError, with a file under the temporary name `from` (a file or directory) named at its destination `to`. */
export function atDestination(err: unknown, from: string, to: string): unknown {
  const e = asWriteError(err, to)
  if (!(e instanceof WriteError)) return e
  if (e.file === from) return e.with({ file: to })
  if (e.file.startsWith(from + path.sep)) return e.with({ file: to + e.file.slice(from.length) })
  return e
}

/** Runs `write` (which writes `file`), turning a system error into a WriteError that names `file`. */
export function writing<T>(file: string, write: () => T): T {
  try {
    return write()
  } catch (err) {
    throw asWriteError(err, file)
  }
}

// ---------------------------------------------------------------------------------------------
// the test hook

const budgetFromEnv = (): number | null => {
  const v = process.env.PLWTUNE_TEST_WRITE_BUDGET
  return v !== undefined && v !== '' && Number.isFinite(Number(v)) ? Number(v) : null
}
let writeBudget: number | null = budgetFromEnv()

/**
 * Test hook: after `bytes` more bytes (through writeAll), writes fail with ENOSPC, the last one
 * partly done; null turns it off. Returns the bytes left of the previous budget (null: none).
 */
export function setWriteBudgetForTests(bytes: number | null): number | null {
  const left = writeBudget
  writeBudget = bytes
  return left
}

function simulatedEnospc(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' })
}

// ---------------------------------------------------------------------------------------------
// bytes to disk

/** Largest single write handed to the OS (Linux moves at most ~2 GiB per call). */
const IO_BYTES = 1 << 30

/**
 * Writes all of `buf` at `position` (null: at the file's current offset), continuing short
 * writes; a failure is a WriteError naming `file`.
 */
export function writeAll(fd: number, buf: Uint8Array, position: number | null, file: string): void {
  let done = 0
  try {
    while (done < buf.length) {
      let n = Math.min(buf.length - done, IO_BYTES)
      if (writeBudget !== null) {
        if (writeBudget <= 0) throw simulatedEnospc()
        n = Math.min(n, writeBudget)
      }
      const w = fs.writeSync(fd, buf, done, n, position === null ? null : position + done)
      if (writeBudget !== null) writeBudget -= w
      done += w
    }
  } catch (err) {
    throw asWriteError(err, file)
  }
}

/**
 * Writes `data` to `file` (created or truncated) and fsyncs it. Not atomic by itself: callers
 * write into a temporary file or directory (replaceFile, replaceDir), whose clean-up removes
 * what a failure left. A failure is a WriteError naming `file`.
 */
export function writeFileSynced(file: string, data: string | Uint8Array): void {
  writing(file, () => {
    const fd = fs.openSync(file, 'w')
    try {
      writeAll(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data, null, file)
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  })
}

/**
 * Appends `text` to `file` (created if missing). When the append fails, the file is cut back to
 * its previous length, so that it never ends in half a line; the error names the file.
 */
export function appendFileRestoring(file: string, text: string): void {
  writing(file, () => {
    const fd = fs.openSync(file, 'a')
    try {
      const size = fs.fstatSync(fd).size
      try {
        writeAll(fd, Buffer.from(text, 'utf8'), null, file)
      } catch (err) {
        try { fs.ftruncateSync(fd, size) } catch { /* the error below says what happened */ }
        throw err
      }
    } finally {
      fs.closeSync(fd)
    }
  })
}

/** Flushes a directory's entries (after renames into it); a no-op where the platform cannot. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined
  try {
    fd = fs.openSync(dir, 'r')
    fs.fsyncSync(fd)
  } catch {
    // Some platforms (Windows) cannot fsync a directory; the renames are still atomic there.
  } finally {
    if (fd !== undefined) fs.closeSync(fd)
  }
}

/** Whether a process with this id runs (signal 0 probes without sending): temp files of dead writers may go. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The temporary name of `target` while it is written: `.NAME.PID.tmp` in the same directory. */
export function tempName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.tmp`)
}

// ---------------------------------------------------------------------------------------------
// atomic replacement

/**
 * Writes `file` atomically: `data` (or what `write(tmp)` writes, fsynced by it) goes to the
 * temporary name, which is then renamed over `file`. On failure the temporary file is removed,
 * `file` is as it was, and a system error is a WriteError naming `file` (with `save` when given).
 */
export function replaceFile(file: string, data: string | Uint8Array | ((tmp: string) => void), save?: SaveInfo): void {
  const tmp = tempName(file)
  try {
    if (typeof data === 'function') data(tmp)
    else writeFileSynced(tmp, data)
    writing(file, () => fs.renameSync(tmp, file))
  } catch (err) {
    fs.rmSync(tmp, { force: true })
    const e = atDestination(err, tmp, file)
    throw e instanceof WriteError && save ? e.with({ save }) : e
  }
  fsyncDir(path.dirname(file))
}

/**
 * Writes directory `target` atomically: `write(tmp)` fills the temporary directory (created
 * empty), which is fsynced and then swapped in (a previous `target` is renamed to
 * `NAME.old-PID` first and removed after). On failure the temporary directory is removed and
 * `target` is as it was; a system error is a WriteError naming the file at its destination,
 * with `save` (what was saved, its size).
 */
export async function replaceDir(target: string, write: (tmp: string) => Promise<void> | void, save: SaveInfo): Promise<void> {
  const tmp = tempName(target)
  const old = `${target}.old-${process.pid}`
  let moved = false
  try {
    fs.rmSync(tmp, { recursive: true, force: true })
    writing(target, () => fs.mkdirSync(tmp, { recursive: true }))
    await write(tmp)
    fsyncDir(tmp)
    if (fs.existsSync(target)) {
      writing(target, () => fs.renameSync(target, old))
      moved = true
    }
    writing(target, () => fs.renameSync(tmp, target))
  } catch (err) {
    if (moved) { try { fs.renameSync(old, target) } catch { /* both renames failed: the previous one stays as NAME.old-PID */ } }
    fs.rmSync(tmp, { recursive: true, force: true })
    const e = atDestination(err, tmp, target)
    throw e instanceof WriteError ? e.with({ save }) : e
  }
  fs.rmSync(old, { recursive: true, force: true })
  fsyncDir(path.dirname(target))
}
