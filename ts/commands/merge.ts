/**
 * `plwtune merge --model BASE --adapter DIR --out OUT`: base + LoRA adapter as one plain
 * Hugging Face model directory (W + scaling·B·A for every adapted layer; ts/model.ts
 * saveMerged), in the base's dtype unless --dtype says otherwise, with the tokenizer files
 * and plwtune.json of the adapter (else of the base). transformers and every plwtune command
 * load the result as any model. Written under a temporary name and renamed into place; a
 * failure (a full disk) removes what it wrote and says which file, why, and the size needed.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { loadModel, Model } from '../model'
import { SaveDtype } from '../checkpoint'
import { writeTokenizerFiles } from '../train/tokenizer-files'
import { META_FILE } from '../model-dir'
import { CommandIO, fail, modelRefOf, STD_IO } from './common'
import { commandHelp, FlagTable, parseFlags, UsageError } from './flags'
import { prepareOutputDir } from '../output-path'
import { replaceDir, writeFileSynced } from '../atomic-write'
import { dtypeBytes } from '../safetensors'

const FLAGS = {
  model: { kind: 'string', group: 'model', placeholder: 'BASE',
    help: 'the base model directory (omit it to use the base a LoRA run\'s adapter records)' },
  adapter: { kind: 'string', group: 'model', placeholder: 'DIR',
    help: 'a PEFT LoRA adapter directory (a LoRA run\'s final/, best/ or checkpoint, or PEFT\'s own)' },
  out: { kind: 'string', group: 'output', placeholder: 'OUT', help: 'the merged model directory (refused if it exists, unless --overwrite)' },
  dtype: { kind: 'string', group: 'output', placeholder: 'DTYPE', default: 'auto',
    help: 'tensor dtype on disk: auto (the base\'s), float32, bfloat16, float16' },
  overwrite: { kind: 'boolean', group: 'output', help: 'replace --out if it exists' },
} satisfies FlagTable

export const MERGE_USAGE = commandHelp({
  usage: 'plwtune merge [--model BASE] --adapter DIR --out OUT [--dtype auto|float32|bfloat16|float16] [--overwrite]',
  summary: `Merges a LoRA adapter into its base model: OUT is a plain Hugging Face model directory
(config.json, model.safetensors, tokenizer files) with W + scaling·B·A in every adapted layer.`,
  table: FLAGS,
  examples: [
    'plwtune merge --adapter runs/lora/final --out models/merged',
    'plwtune merge --model Qwen2.5-0.5B --adapter runs/lora/best --out models/merged --dtype bfloat16 --overwrite',
  ],
})

const DTYPES: Record<string, SaveDtype | 'auto'> = { auto: 'auto', float32: 'F32', bfloat16: 'BF16', float16: 'F16' }

export async function mergeCommand(argv: string[], io: CommandIO = STD_IO): Promise<number> {
  let model: Model | null = null
  try {
    const { values: v, positional } = parseFlags(argv, FLAGS)
    if (v.help) { io.out.write(MERGE_USAGE + '\n'); return 0 }
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])} (flags start with --; see --help)`)
    const adapter = v.adapter as string | undefined
    const out = v.out as string | undefined
    if (adapter === undefined) throw new UsageError('--adapter DIR is required')
    if (out === undefined) throw new UsageError('--out OUT is required')
    const dtype = DTYPES[(v.dtype as string | undefined) ?? 'auto']
    if (dtype === undefined) throw new UsageError(`--dtype: expected one of ${Object.keys(DTYPES).join(', ')}, received ${JSON.stringify(v.dtype)}`)
    const ref = v.model !== undefined ? modelRefOf(v.model as string, adapter, null) : modelRefOf(adapter, undefined, null)
    if (fs.existsSync(out) && !v.overwrite) throw new UsageError(`--out ${out} exists (--overwrite replaces it)`)
    prepareOutputDir(path.dirname(path.resolve(out)), '--out', out)

    io.err.write(`merging ${adapter} into ${ref.adapter !== undefined ? ref.dir : 'its recorded base'} ...\n`)
    model = await loadModel(ref.dir, { adapter: ref.adapter, device: 'cpu', precision: 'f32' })
    const target = path.resolve(out)
    const m = model
    const onDisk = dtype === 'auto' ? m.sourceDtype : dtype
    const bytes = m.baseParameters().reduce((s, p) => s + p.shape.reduce((a, d) => a * d, 1), 0) * (dtypeBytes(onDisk) ?? 4)
    await replaceDir(target, async (tmp) => {
      await m.saveMerged(tmp, { dtype })
      const files = fs.existsSync(path.join(adapter, 'tokenizer.json')) ? adapter : (m.base?.dir ?? ref.dir)
      writeTokenizerFiles(tmp, { modelDir: files })
      const meta = path.join(adapter, META_FILE)
      if (fs.existsSync(meta)) writeFileSynced(path.join(tmp, META_FILE), fs.readFileSync(meta))
    }, { what: 'the merged model', bytes, dir: path.dirname(target) })
    const lora = model.lora!
    io.out.write(`wrote ${out}: ${model.describe()}, LoRA r=${lora.r} alpha=${lora.alpha} on ${lora.targets.join(',')} merged ` +
      `(${model.adapterParameters().length / 2} layers)\n`)
    return 0
  } catch (err) {
    return fail(io, 'merge', err)
  } finally {
    model?.dispose()
  }
}
