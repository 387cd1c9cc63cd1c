/**
 * `plwtune chat`: an interactive terminal chat with a model, its answers streamed token by
 * token (ts/chat/repl.ts), the conversation rendered with the template the model answers in
 * (ts/chat/session.ts) and kept within its context.
 *
 *   plwtune chat --model runs/a/final
 *   plwtune chat --model Qwen2.5-0.5B-Instruct --adapter runs/lora/final --system "Answer briefly."
 *   echo "red" | plwtune chat --model DIR --temperature 0      # one answer per input line
 *
 * The template: --template, else the one the model was trained with (plwtune.json, or the
 * run's config.json with --run), else the model's own chat_template, else chatml.
 */
import { baseDirOf, Model } from '../model'
import { resolveTemplate } from '../data/resolve-template'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
import { checkTokenizerFits, loadTokenizer } from '../model-dir'
import { ChatParams, describeParams } from '../chat/commands'
import { runRepl } from '../chat/repl'
import { ChatSession } from '../chat/session'
import { CommandIO, fail, KnownMeta, modelRefOf, readRun, RunInfo, STD_IO, trainingMeta } from './common'
import { commandHelp, FlagTable, parseFlags, UsageError } from './flags'
import { loadForGeneration } from './generate'

export const CHAT_FLAGS = {
  model: { kind: 'string', group: 'model', placeholder: 'DIR', help: 'the model directory, or a LoRA adapter directory (default with --run: RUN_DIR/final)' },
  adapter: { kind: 'string', group: 'model', placeholder: 'DIR', help: 'a PEFT LoRA adapter applied to --model' },
  run: { kind: 'string', group: 'model', placeholder: 'RUN_DIR', help: 'a training run: its final/ model and its training template' },
  template: { kind: 'string', group: 'model', placeholder: 'SPEC',
    help: 'chat_template, chatml, phi3, alpaca, completion or a template string (default: as above)' },
  device: { kind: 'string', group: 'model', placeholder: 'D', default: 'auto', help: 'cpu | cuda | auto' },
  context: { kind: 'integer', group: 'generation', help: 'tokens of conversation kept, prompt and answer together (default: the model\'s positions)' },
  system: { kind: 'string', group: 'generation', placeholder: 'TEXT', help: 'the system prompt (/system changes it)' },
  temperature: { kind: 'number', group: 'generation', default: 0.7, help: 'sampling temperature; 0 is greedy' },
  'top-p': { kind: 'number', group: 'generation', default: 0.9, help: 'nucleus sampling: the smallest set of tokens with this probability, in (0, 1]' },
  'top-k': { kind: 'integer', group: 'generation', default: 0, help: 'sample among the k likeliest tokens; 0: all' },
  'max-tokens': { kind: 'integer', group: 'generation', default: 512, help: 'new tokens per answer at most' },
  seed: { kind: 'integer', group: 'generation', help: 'the sampling seed of every answer (default: a random one each answer)' },
} satisfies FlagTable

const SUMMARY = `An interactive chat in the terminal: type a message, the answer streams in token by token.
The conversation is rendered with the template the model answers in (--template, else its training
template from plwtune.json or --run, else its chat_template, else chatml) and kept within its context:
when it would not fit, the oldest turns are dropped, with a note. Piped input gets one answer per line.`

const NOTES = `In the chat:
  /reset                 forget the conversation (the system prompt stays)
  /system TEXT           set the system prompt (/system alone clears it)
  /params k=v ...        temperature, top_p, top_k, max_tokens, seed (seed=random); /params alone shows them
  /help, /exit           the commands; leave (also /quit)
  Ctrl-C stops an answer; at the prompt, or twice quickly, it leaves. Ctrl-D leaves.
Exit status: 0 when the chat ends, 1 when the model cannot be loaded, 2 for a usage error.`

export const CHAT_USAGE = commandHelp({
  usage: 'plwtune chat --model DIR [--adapter DIR] [--system TEXT] [--temperature T] [--top-p P] [--max-tokens N] [--seed S] [flags]',
  summary: SUMMARY,
  table: CHAT_FLAGS,
  notes: NOTES,
  examples: [
    'plwtune chat --model runs/a/final',
    'plwtune chat --model models/Qwen2.5-0.5B-Instruct --adapter runs/lora/final --system "Answer in one sentence."',
    'printf "red\\nblue\\n" | plwtune chat --model runs/a/final --temperature 0',
  ],
})

/** Everything `chatCommand` uses: the command's streams and the input it reads. */
export interface ChatIO extends CommandIO {
  in?: NodeJS.ReadableStream
}

/**
 * The template of a chat: --template; else the training template (plwtune.json or the run's
 * config), `auto` resolved for the training data's format; else the model's chat_template,
 * else chatml. `from` says which, for the banner.
 */
export function chatTemplateOf(o: { flag: string | undefined; meta: KnownMeta | null; tokenizer: Tokenizer }): { template: Template; from: string } {
  if (o.flag !== undefined && o.flag !== 'auto') return { template: resolveTemplate(o.flag, { tokenizer: o.tokenizer }), from: '--template' }
  const spec = o.flag === undefined ? o.meta?.template : undefined
  if (spec !== undefined && spec !== 'auto') return { template: resolveTemplate(spec, { tokenizer: o.tokenizer }), from: 'the training template' }
  const format = spec === 'auto' ? o.meta?.format ?? 'chat' : 'chat'
  const template = resolveTemplate(undefined, { format, tokenizer: o.tokenizer })
  const from = spec === 'auto' ? 'the training template (auto)'
    : template.name === 'chat_template' ? 'the model\'s chat_template' : 'the default (no chat_template, no recorded training template)'
  return { template, from }
}

function paramsOf(v: ReturnType<typeof parseFlags<typeof CHAT_FLAGS>>['values']): ChatParams {
  const p: ChatParams = { temperature: v.temperature ?? 0.7, topP: v['top-p'] ?? 0.9, topK: v['top-k'] ?? 0, maxTokens: v['max-tokens'] ?? 512,
    seed: v.seed ?? null }
  if (p.temperature < 0) throw new UsageError(`--temperature: expected a number ≥ 0 (0 is greedy), received ${p.temperature}`)
  if (!(p.topP > 0 && p.topP <= 1)) throw new UsageError(`--top-p: expected a number in (0, 1], received ${p.topP}`)
  if (p.topK < 0) throw new UsageError(`--top-k: expected an integer ≥ 0, received ${p.topK}`)
  if (p.maxTokens < 1) throw new UsageError(`--max-tokens: expected an integer ≥ 1, received ${p.maxTokens}`)
  if (p.seed !== null && !(Number.isSafeInteger(p.seed) && p.seed >= 0)) throw new UsageError(`--seed: expected an integer ≥ 0, received ${p.seed}`)
  return p
}

export async function chatCommand(argv: string[], io: ChatIO = STD_IO): Promise<number> {
  let model: Model | null = null
  try {
    const { values: v, positional } = parseFlags(argv, CHAT_FLAGS)
    if (v.help) { io.out.write(CHAT_USAGE + '\n'); return 0 }
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])} (flags start with --; see --help)`)
    const params = paramsOf(v)
    const device = v.device ?? 'auto'
    if (!['cpu', 'cuda', 'auto'].includes(device)) throw new UsageError(`--device: expected cpu, cuda or auto, received ${JSON.stringify(device)}`)
    if (v.context !== undefined && v.context < 2) throw new UsageError(`--context: expected an integer ≥ 2, received ${v.context}`)
    const run: RunInfo | null = v.run !== undefined ? readRun(v.run) : null
    const ref = modelRefOf(v.model, v.adapter, run)
    const tokenizer = await loadTokenizer(ref.files)
    checkTokenizerFits(tokenizer, ref.files, baseDirOf(ref.dir))
    const { meta } = trainingMeta(ref.files, run)
    const { template, from } = chatTemplateOf({ flag: v.template, meta, tokenizer })
    // The prefill runs in batches of up to 1024 positions (longer prompts go through the KV
    // cache 32 rows at a time), and each turn after the first runs only its new text.
    ;[model] = await loadForGeneration(ref, 1, 1024, device as 'cpu' | 'cuda' | 'auto')
    const contextLength = Math.min(model.maxPositions, v.context ?? Infinity)
    const session = new ChatSession({ template, tokenizer, contextLength, system: v.system ?? null })
    io.err.write(`plwtune chat: ${ref.adapter !== undefined ? `${ref.dir} + ${ref.adapter}` : ref.dir} on ${model.device}, ` +
      `template ${template.name} (${from}), context ${contextLength} tokens, ${describeParams(params)}\n` +
      'Type a message; /help for commands. Ctrl-C stops an answer, Ctrl-D leaves.\n')
    return await runRepl({ session, model, tokenizer, params, input: io.in ?? process.stdin, out: io.out, err: io.err })
  } catch (err) {
    return fail(io, 'chat', err)
  } finally {
    model?.dispose()
  }
}
