/**
 * The chat keeps the conversation in the model's KV cache: each turn after the first runs only
 * its new text (the end of the last answer, the new message, the template around them), and
 * answers as a chat that prefills the whole conversation every turn.
 */
import { Readable, Writable } from 'node:stream'
import { runRepl } from '../../ts/chat/repl'
import { ChatSession } from '../../ts/chat/session'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { loadModel, Model } from '../../ts/model'
import { loadTokenizer } from '../../ts/model-dir'
import { GenerateOptions } from '../../ts/native'
import { StreamTextOptions } from '../../ts/generate-stream'
import { chatModelDir } from './models'

/** Runs the chat over `lines`; returns its answers and each turn's reused token count. */
async function chat(model: Model, dir: string, lines: string, reuse: boolean): Promise<{ out: string; reused: number[] }> {
  const tokenizer = await loadTokenizer(dir)
  const template = resolveTemplate(undefined, { format: 'chat', tokenizer })
  const session = new ChatSession({ template, tokenizer, contextLength: model.maxPositions })
  const reused: number[] = []
  const recording = {
    generateStream: (prompt: ArrayLike<number>, o: GenerateOptions & StreamTextOptions) => {
      const s = model.generateStream(prompt, { ...o, reuseCache: reuse && o.reuseCache })
      void s.result.then((r) => reused.push(r.reusedTokens), () => undefined)
      return s
    },
  }
  let out = ''
  const sink = new Writable({ write(chunk, _enc, cb) { out += String(chunk); cb() } })
  const quiet = new Writable({ write(_chunk, _enc, cb) { cb() } })
  const code = await runRepl({ session, model: recording, tokenizer, params: { temperature: 0, topP: 1, topK: 0, maxTokens: 10, seed: 0 },
    input: Readable.from([lines]), out: sink, err: quiet, terminal: false })
  expect(code).toBe(0)
  return { out, reused }
}

test('each turn after the first takes the conversation so far from the KV cache, and answers the same', async () => {
  const dir = await chatModelDir()
  const model = await loadModel(dir, { device: 'cpu', precision: 'f32', maxBatch: 1, maxSeqLen: 64 })
  try {
    // 64 positions: three short turns whose prompts and 10-token answers fit without the
    // session dropping the oldest turn (which would make the next prompt no continuation)
    const lines = 'red\nagain\nblue\n'
    const cached = await chat(model, dir, lines, true)
    const whole = await chat(model, dir, lines, false)
    expect(cached.out).toBe(whole.out)
    expect(cached.out.startsWith('apple\napple\n')).toBe(true) // "again" repeats the last answer: the history was seen
    expect(whole.reused).toEqual([0, 0, 0])
    expect(cached.reused[0]).toBe(0)
    // Turn k's prompt starts with turn k-1's prompt and answer: all of it but the answer's
    // last token, and its end (" END", the newline, the new question) is what runs.
    expect(cached.reused[1]).toBeGreaterThan(10)
    expect(cached.reused[2]).toBeGreaterThan(cached.reused[1] + 10)
  } finally {
    model.dispose()
  }
})
