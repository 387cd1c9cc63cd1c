/**
 * `plwtune serve`: a model behind an OpenAI-compatible HTTP API (ts/serve/server.ts,
 * docs/deploy.md "The server").
 *
 *   plwtune serve --model runs/a/final
 *   plwtune serve --model base/ --adapter runs/lora/final --port 9000 --api-key "$KEY"
 *
 * Chat requests are rendered with the template the model was trained with (plwtune.json),
 * else the model's own chat_template (chatml when it has none), or --template. Ctrl-C (SIGINT)
 * or SIGTERM closes cleanly: no new connections, running streams end, waiting requests get
 * 503, the model is freed, exit status 0.
 */
import * as path from 'node:path'
import { readConfig } from '../checkpoint'
import { maxPositions } from '../arch'
import { resolveTemplate } from '../data/resolve-template'
import { Template } from '../data/template'
import { baseDirOf, loadModel, Model } from '../model'
import { checkTokenizerFits, loadTokenizer } from '../model-dir'
import { Device } from '../native'
import { SERVER_DEFAULTS, ServedModel, startServer } from '../serve/server'
import { CommandIO, fail, modelRefOf, pickTemplate, STD_IO, trainingMeta } from './common'
import { commandHelp, FlagTable, parseFlags, UsageError } from './flags'

export const SERVE_FLAGS = {
  model: { kind: 'string', group: 'model', placeholder: 'DIR', help: 'the model directory (or a LoRA adapter directory, which records its base)' },
  adapter: { kind: 'string', group: 'model', placeholder: 'DIR', help: 'a PEFT LoRA adapter applied to --model' },
  template: { kind: 'string', group: 'model', placeholder: 'SPEC',
    help: 'chat requests\' template: alpaca, phi3, chatml, completion, chat_template, or a string [the training one, else chat_template]' },
  name: { kind: 'string', group: 'model', help: 'the model id /v1/models lists and responses carry [the directory\'s name]' },
  device: { kind: 'string', group: 'model', placeholder: 'D', help: 'cpu | cuda | auto', default: 'auto' },
  context: { kind: 'integer', group: 'generation', help: 'tokens of prompt + answer per request [the model\'s positions]' },
  'max-tokens': { kind: 'integer', group: 'generation', help: 'new tokens when a request gives no max_tokens', default: SERVER_DEFAULTS.defaultMaxTokens },
  'no-prompt-cache': { kind: 'boolean', group: 'generation',
    help: 'prefill every request whole (by default a request that starts with the last one\'s prompt and answer reuses their KV cache)' },
  host: { kind: 'string', group: 'server', placeholder: 'ADDR', help: 'the address to listen on (0.0.0.0: every interface)', default: SERVER_DEFAULTS.host },
  port: { kind: 'integer', group: 'server', help: 'the port (0: any free one, printed)', default: SERVER_DEFAULTS.port },
  'max-queue': { kind: 'integer', group: 'server', help: 'requests that may wait for the model behind the running one; more get 429', default: SERVER_DEFAULTS.maxQueue },
  timeout: { kind: 'number', group: 'server', placeholder: 'S', help: 'seconds a request may take, waiting included; then it is stopped (504)', default: SERVER_DEFAULTS.timeoutS },
  'max-body': { kind: 'integer', group: 'server', placeholder: 'BYTES', help: 'the largest request body; larger ones get 413', default: SERVER_DEFAULTS.maxBodyBytes },
  'api-key': { kind: 'string', group: 'server', placeholder: 'KEY',
    help: 'require "Authorization: Bearer KEY" (401 otherwise) [$PLWTUNE_API_KEY when set]' },
  quiet: { kind: 'boolean', group: 'output', help: 'no line per request on stderr' },
} satisfies FlagTable

export const SERVE_HELP = commandHelp({
  usage: 'plwtune serve --model DIR [--adapter DIR] [--port 8080] [--host 127.0.0.1] [flags]',
  summary: 'An OpenAI-compatible HTTP server: POST /v1/completions (the prompt as it is), POST /v1/chat/completions\n' +
    '(rendered with the model\'s training or chat template), GET /v1/models; max_tokens, temperature, top_p,\n' +
    'stop, seed, and stream (server-sent events). One request computes at a time, the others wait in line.\n' +
    'Listens on 127.0.0.1 only unless --host says otherwise; no TLS (put a reverse proxy in front). Ctrl-C stops it.',
  table: SERVE_FLAGS,
  examples: [
    'plwtune serve --model runs/a/final',
    'plwtune serve --model Qwen2.5-0.5B-Instruct --adapter runs/lora/final --port 9000 --api-key "$KEY"',
    'curl http://127.0.0.1:8080/v1/chat/completions -H "Content-Type: application/json" \\\n' +
    '    -d \'{"model": "final", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}\'',
  ],
})

/** Largest prompt the model prefills in one forward (longer ones go through the KV cache 32 rows at a time): bounds its activation memory. */
const PREFILL_CHUNK = 1024

/** The chat template: --template, else the training template (plwtune.json), else the model's chat_template (or chatml). */
function chatTemplate(flag: string | undefined, modelDir: string, tokenizer: Awaited<ReturnType<typeof loadTokenizer>>,
  note: (line: string) => void): Template {
  const { meta } = trainingMeta(modelDir, null)
  if (flag !== undefined || meta !== null) return pickTemplate({ flag, meta, modelDir, format: 'chat', tokenizer, warn: note })
  const t = resolveTemplate(undefined, { format: 'chat', tokenizer })
  note(`note: ${modelDir} has no plwtune.json: chat requests use ${t.name === 'chatml' ? 'chatml (the model has no chat_template)' : 'the model\'s chat_template'}` +
    ' (--template SPEC to choose)')
  return t
}

/**
 * Runs the server until SIGINT/SIGTERM (or `o.signal`, for callers in the same process), then
 * closes it and frees the model. `o.onListening` gets the URL once it listens.
 */
export async function serveCommand(argv: string[], io: CommandIO = STD_IO,
  o: { signal?: AbortSignal; onListening?: (url: string) => void } = {}): Promise<number> {
  let model: Model | null = null
  const removers: Array<() => void> = []
  try {
    const { values: v, positional } = parseFlags(argv, SERVE_FLAGS)
    if (v.help) { io.out.write(SERVE_HELP + '\n'); return 0 }
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])} (flags start with --; see --help)`)
    const device = v.device ?? 'auto'
    if (!['cpu', 'cuda', 'auto'].includes(device)) throw new UsageError(`--device: expected cpu, cuda or auto, received ${JSON.stringify(device)}`)
    const port = v.port ?? SERVER_DEFAULTS.port
    if (!(port >= 0 && port <= 65535)) throw new UsageError(`--port: expected an integer in [0, 65535], received ${port}`)
    const maxQueue = v['max-queue'] ?? SERVER_DEFAULTS.maxQueue
    if (maxQueue < 0) throw new UsageError(`--max-queue: expected an integer ≥ 0, received ${maxQueue}`)
    const timeoutS = v.timeout ?? SERVER_DEFAULTS.timeoutS
    if (!(timeoutS > 0)) throw new UsageError(`--timeout: expected a number of seconds > 0, received ${timeoutS}`)
    const maxBody = v['max-body'] ?? SERVER_DEFAULTS.maxBodyBytes
    if (maxBody < 1) throw new UsageError(`--max-body: expected an integer ≥ 1, received ${maxBody}`)
    const maxTokens = v['max-tokens'] ?? SERVER_DEFAULTS.defaultMaxTokens
    if (maxTokens < 1) throw new UsageError(`--max-tokens: expected an integer ≥ 1, received ${maxTokens}`)
    const apiKey = v['api-key'] ?? (process.env.PLWTUNE_API_KEY || undefined)
    if (apiKey !== undefined && apiKey.trim() === '') throw new UsageError('--api-key: empty (give a real key, or none)')

    const ref = modelRefOf(v.model, v.adapter, null)
    const base = baseDirOf(ref.dir)
    const positions = maxPositions(readConfig(base))
    const context = v.context ?? positions
    if (!(context >= 2 && context <= positions)) throw new UsageError(`--context: expected an integer in [2, ${positions}] (the model's positions), received ${context}`)
    const tokenizer = await loadTokenizer(ref.files)
    checkTokenizerFits(tokenizer, ref.files, base)
    const template = chatTemplate(v.template, ref.files, tokenizer, (line) => io.err.write(line + '\n'))
    model = await loadModel(ref.dir, { adapter: ref.adapter, device: device as Device | 'auto', precision: 'f32', maxBatch: 1,
      maxSeqLen: Math.min(context, PREFILL_CHUNK) })
    const name = v.name ?? path.basename(path.resolve(ref.adapter ?? ref.dir))
    const served: ServedModel = { model, tokenizer, template, name, context }
    const running = await startServer({ served, host: v.host ?? SERVER_DEFAULTS.host, port, maxQueue, timeoutS, apiKey: apiKey ?? null,
      maxBodyBytes: maxBody, defaultMaxTokens: maxTokens, promptCache: !v['no-prompt-cache'], log: v.quiet ? undefined : (line) => io.err.write(line + '\n') })
    io.out.write(`plwtune serve: ${running.url}/v1 serves ${name} (${model.describe()}; ${model.device}; chat template ${template.name}; ` +
      `context ${context})${apiKey !== undefined ? ', API key required' : ''}; Ctrl-C stops it\n`)
    o.onListening?.(running.url)

    // Until a signal: the first closes cleanly; another one more than 2 s later (while closing)
    // quits at once. The copies npm and npx forward right after the first are absorbed.
    let first = 0
    await new Promise<void>((resolve) => {
      const onSignal = (signal: string): void => {
        if (first !== 0) {
          if (Date.now() - first > 2000) { io.err.write(`plwtune serve: ${signal} again: quitting at once\n`); process.exit(130) }
          return
        }
        first = Date.now()
        io.err.write(`plwtune serve: ${signal}: closing (streams end, waiting requests get 503)\n`)
        resolve()
      }
      const sigint = (): void => onSignal('SIGINT')
      const sigterm = (): void => onSignal('SIGTERM')
      process.on('SIGINT', sigint)
      process.on('SIGTERM', sigterm)
      removers.push(() => { process.off('SIGINT', sigint); process.off('SIGTERM', sigterm) })
      if (o.signal?.aborted) resolve()
      o.signal?.addEventListener('abort', () => onSignal('abort'), { once: true })
    })
    await running.close()
    io.err.write('plwtune serve: closed\n')
    return 0
  } catch (err) {
    return fail(io, 'serve', err)
  } finally {
    for (const remove of removers) remove()
    model?.dispose()
  }
}
