/**
 * The read-answer loop of `plwtune chat` over Node's readline: a line is a message (answered
 * with the tokens streamed as they come) or a slash command (commands.ts).
 *
 * Keys. In a terminal readline reads raw keys: Ctrl-C arrives as the interface's 'SIGINT'
 * event; from a pipe it is the process's SIGINT; both go to `interrupt`:
 * - during an answer it aborts the generation (the engine stops at its next token) and the
 *   prompt comes back; the partial answer stays in the history, as it was shown;
 * - at the prompt, or a second time within a second, it ends the chat (status 0). A second
 *   Ctrl-C while an answer is stopping waits for the engine (a token) before leaving, so the
 *   model is never disposed mid-computation.
 * Ctrl-D on an empty line (or the end of piped input) ends the chat after the lines already
 * read are answered.
 *
 * Output. Answers go to `out`, followed by a newline; notes (history dropped, an answer cut,
 * errors) go to `err`, in parentheses. Off a terminal there is no prompt, so piped input gives
 * one answer per line.
 */
import { randomInt } from 'node:crypto'
import * as readline from 'node:readline'
import { Tokenizer } from '../data/tokenizer'
import { PrefixStripper } from '../eval/generation'
import { StreamPiece, StreamResult, StreamTextOptions } from '../generate-stream'
import { GenerateOptions } from '../native'
import { CHAT_HELP, ChatParams, describeParams, parseInput } from './commands'
import { ChatSession, ContextError } from './session'

/** What the loop needs of a model: streaming generation (Model.generateStream). */
export interface ChatModel {
  generateStream(prompt: ArrayLike<number>, options: GenerateOptions & StreamTextOptions): AsyncIterable<StreamPiece> & { result: Promise<StreamResult> }
}

export interface ReplOptions {
  session: ChatSession
  model: ChatModel
  tokenizer: Tokenizer
  params: ChatParams
  input: NodeJS.ReadableStream
  out: NodeJS.WritableStream
  err: NodeJS.WritableStream
  /** Prompts and raw keys (default: input and out are both TTYs). */
  terminal?: boolean
  /** Ctrl-Cs closer than this end the chat (ms, default 1000). */
  doubleInterruptMs?: number
}

/** Turns as notes say them. */
function turns(n: number): string {
  return n === 1 ? 'turn' : `${n} turns`
}

/** Runs the chat until /exit, Ctrl-D, the end of input or Ctrl-C at the prompt. Returns the exit status (0). */
export async function runRepl(o: ReplOptions): Promise<number> {
  const isTty = (s: unknown) => Boolean((s as { isTTY?: boolean }).isTTY)
  const terminal = o.terminal ?? (isTty(o.input) && isTty(o.out))
  const rl = readline.createInterface({ input: o.input, output: terminal ? o.out : undefined, terminal, prompt: '> ', historySize: 200 })
  const note = (text: string) => o.err.write(`(${text})\n`)
  const params: ChatParams = { ...o.params }
  const session = o.session
  const doubleMs = o.doubleInterruptMs ?? 1000

  const lines: string[] = []
  let closed = false
  let quitting = false
  let wake: (() => void) | null = null
  const notify = () => { const w = wake; wake = null; w?.() }
  rl.on('line', (line) => { lines.push(line); notify() })
  rl.on('close', () => { closed = true; notify() })

  let generating: AbortController | null = null
  let lastInterrupt = -Infinity
  const interrupt = (): void => {
    const now = Date.now()
    const quick = now - lastInterrupt < doubleMs
    lastInterrupt = now
    if (generating !== null && !quick && !generating.signal.aborted) {
      generating.abort()
      return
    }
    // At the prompt, or a second Ctrl-C: leave (after the answer in flight has stopped).
    generating?.abort()
    quitting = true
    lines.length = 0
    if (terminal && generating === null) o.out.write('\n')
    notify()
  }
  rl.on('SIGINT', interrupt)
  process.on('SIGINT', interrupt)

  const answer = async (user: string): Promise<void> => {
    let prepared
    try {
      prepared = session.prepare(user, params.maxTokens)
    } catch (err) {
      if (err instanceof ContextError) { note(`not sent: ${err.message}`); return }
      throw err
    }
    if (prepared.dropped > 0) {
      note(`dropped the oldest ${turns(prepared.dropped)} of the conversation to fit the model's context of ${session.contextLength} tokens`)
    }
    const controller = new AbortController()
    // The template's answer prefix (alpaca's "\n") and leading blanks are not shown.
    const strip = new PrefixStripper(session.answerPrefix)
    let started = false
    const show = (text: string): void => {
      let t = strip.push(text)
      if (!started) t = t.replace(/^\s+/, '')
      if (t === '') return
      started = true
      o.out.write(t)
    }
    let result: StreamResult
    generating = controller
    try {
      const stream = o.model.generateStream(prepared.ids, {
        maxNewTokens: prepared.maxTokens, temperature: params.temperature, topP: params.topP, topK: params.topK,
        seed: params.seed ?? randomInt(0, 2 ** 31 - 1), stopIds: session.stopIds, signal: controller.signal,
        reuseCache: true, // the conversation so far is in the cache: a turn runs only its new text
        decode: (ids) => o.tokenizer.decode(ids), stopStrings: session.stopStrings,
      })
      for await (const piece of stream) if (piece.text !== '') show(piece.text)
      show(strip.end())
      result = await stream.result
    } finally {
      generating = null
    }
    o.out.write('\n')
    const text = session.cleanAnswer(result.text)
    switch (result.stopReason) {
      case 'aborted': note(text === '' ? 'stopped; nothing kept' : 'stopped'); break
      case 'max_tokens':
        note(prepared.maxTokens < params.maxTokens ? `cut at ${prepared.maxTokens} tokens: the context is full (/reset starts afresh)`
          : `cut at max_tokens=${params.maxTokens} (/params max_tokens=N for longer answers)`)
        break
      case 'length': note('cut: the context is full (/reset starts afresh)'); break
    }
    if (result.stopReason !== 'aborted' || text !== '') session.add(user, text)
  }

  try {
    let prompted = false
    while (true) {
      if (quitting) break
      if (lines.length === 0) {
        if (closed) break
        if (terminal && !prompted) { rl.prompt(); prompted = true }
        await new Promise<void>((resolve) => { wake = resolve })
        continue
      }
      prompted = false
      const input = parseInput(lines.shift() as string)
      switch (input.kind) {
        case 'empty': break
        case 'message':
          try {
            await answer(input.text)
          } catch (err) {
            o.err.write(`plwtune chat: ${(err as Error).message}\n`)
          }
          break
        case 'reset':
          session.reset()
          note('conversation cleared')
          break
        case 'system':
          session.system = input.text
          if (input.text === null) note('system prompt cleared')
          else note(`system prompt set${session.chat ? '' : `; the ${session.template.name} template has no system role, so it goes first, as plain text`}`)
          break
        case 'params':
          Object.assign(params, input.set)
          note(describeParams(params))
          break
        case 'show-params':
          note(describeParams(params))
          break
        case 'help':
          o.err.write(CHAT_HELP + '\n')
          break
        case 'exit':
          quitting = true
          break
        case 'error':
          note(input.message)
          break
      }
    }
  } finally {
    process.off('SIGINT', interrupt)
    rl.close()
  }
  return 0
}
