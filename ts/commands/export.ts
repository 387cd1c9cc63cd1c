/**
 * `plwtune export gguf --model DIR [--adapter DIR] --out FILE.gguf [--dtype f32|f16|bf16|q8_0]`:
 * a model directory (with a LoRA adapter merged in on the way) as one GGUF file for
 * llama.cpp, node-llama-cpp, Ollama and LM Studio (ts/export/, docs/deploy.md).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { formatBytes } from '../atomic-write'
import { exportGguf } from '../export/export-gguf'
import { GGUF_DTYPES, GgufDtype } from '../export/gguf-writer'
import { prepareOutputDir } from '../output-path'
import { CommandIO, fail, STD_IO } from './common'
import { FlagTable, UsageError, commandHelp, parseFlags } from './flags'

export const EXPORT_FLAGS = {
  model: { kind: 'string', group: 'model', placeholder: 'DIR', help: 'the model directory (or a LoRA adapter directory that records its base)' },
  adapter: { kind: 'string', group: 'model', placeholder: 'DIR', help: 'a PEFT LoRA adapter directory, merged into the model on the way' },
  out: { kind: 'string', group: 'output', placeholder: 'FILE', help: 'the GGUF file to write (refused if it exists, unless --overwrite)' },
  dtype: { kind: 'string', group: 'output', default: 'f32', placeholder: 'T',
    help: 'weights as f32, f16, bf16 or q8_0 (norms and biases stay f32)' },
  name: { kind: 'string', group: 'output', placeholder: 'NAME', help: 'general.name in the file (default: the model directory\'s name)' },
  overwrite: { kind: 'boolean', group: 'output', default: false, help: 'replace --out if it exists' },
} as const satisfies FlagTable

export const EXPORT_HELP = commandHelp({
  usage: 'plwtune export gguf --model DIR [--adapter DIR] --out FILE.gguf [--dtype f32|f16|bf16|q8_0]',
  summary: 'Writes a model as one GGUF file (llama.cpp\'s format, version 3) for llama.cpp, node-llama-cpp, Ollama and\n' +
    'LM Studio: the architecture\'s metadata, the weights, the tokenizer and the chat template. GPT-2, Llama,\n' +
    'Mistral (as llama), Qwen2 and Qwen3 models; byte-level BPE and SentencePiece-style tokenizers.',
  table: EXPORT_FLAGS,
  examples: [
    'plwtune export gguf --model runs/demo/final --out demo.gguf',
    'plwtune export gguf --model Qwen2.5-0.5B --adapter runs/lora/final --out qwen-tuned.q8_0.gguf --dtype q8_0',
  ],
})

export async function exportCommand(argv: string[], io: CommandIO = STD_IO): Promise<number> {
  try {
    const { values: v, positional } = parseFlags(argv, EXPORT_FLAGS)
    if (v.help) { io.out.write(EXPORT_HELP + '\n'); return 0 }
    const format = positional[0]
    if (format === undefined) throw new UsageError('which format? `plwtune export gguf ...` (see --help)')
    if (format !== 'gguf') throw new UsageError(`unknown export format ${JSON.stringify(format)}: plwtune exports gguf`)
    if (positional.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(positional[1])} (flags start with --; see --help)`)
    const model = v.model
    const out = v.out
    if (model === undefined) throw new UsageError('--model DIR is required')
    if (out === undefined) throw new UsageError('--out FILE.gguf is required')
    const dtype = (v.dtype ?? 'f32') as GgufDtype
    if (!GGUF_DTYPES.includes(dtype)) throw new UsageError(`--dtype: expected one of ${GGUF_DTYPES.join(', ')}, received ${JSON.stringify(v.dtype)}`)
    if (!fs.existsSync(model)) throw new UsageError(`--model ${model}: no such directory`)
    if (v.adapter !== undefined && !fs.existsSync(path.join(v.adapter, 'adapter_config.json'))) {
      throw new UsageError(`--adapter ${v.adapter}: no adapter_config.json (expected a PEFT LoRA adapter directory, e.g. a LoRA run's final/)`)
    }
    if (fs.existsSync(out) && fs.statSync(out).isDirectory()) throw new UsageError(`--out ${out} is a directory; give a file name (FILE.gguf)`)
    if (fs.existsSync(out) && !v.overwrite) throw new UsageError(`--out ${out} exists (--overwrite replaces it)`)
    prepareOutputDir(path.dirname(path.resolve(out)), '--out', out)

    io.err.write(`exporting ${v.adapter !== undefined ? `${model} + adapter ${v.adapter}` : model} to ${out} (${dtype}) ...\n`)
    let last = 0
    const report = await exportGguf({
      model, adapter: v.adapter, out, dtype, name: v.name,
      onProgress(done, total, bytesDone, bytesTotal) {
        // A progress line for big models: at most one a second, and only once the file is past 64 MiB.
        const now = Date.now()
        if (bytesTotal < 64 * 2 ** 20 || (now - last < 1000 && done < total)) return
        last = now
        io.err.write(`  ${done}/${total} tensors, ${formatBytes(bytesDone)} of ${formatBytes(bytesTotal)}\n`)
      },
    })
    io.out.write(`wrote ${out}: ${report.arch}, ${report.dtype}, ${report.tensors} tensors, ${formatBytes(report.bytes)}; ` +
      `tokenizer ${report.vocab}${report.chatTemplate ? ', chat template' : ', no chat template'}` +
      `${report.mergedLayers > 0 ? `; LoRA merged into ${report.mergedLayers} layers` : ''}\n`)
    return 0
  } catch (err) {
    return fail(io, 'export', err)
  }
}
