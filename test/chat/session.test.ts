/**
 * The chat's conversation state and input parsing, as functions: how a conversation renders
 * (instruction templates turn by turn with the eos between, chat templates as one chat record,
 * the system prompt), what ends an answer, history trimming to the context, the template
 * choice, and the /commands with their error messages.
 */
import { chatTemplateOf } from '../../ts/commands/chat'
import { describeParams, parseInput } from '../../ts/chat/commands'
import { ChatSession, ContextError } from '../../ts/chat/session'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { ByteTokenizer, Tokenizer } from '../../ts/data/tokenizer'
import { QA_TEMPLATE } from '../commands/tiny-model'
import { CHAT_TEMPLATE } from './models'

const bytes = new ByteTokenizer()
const utf8 = (s: string) => [...Buffer.from(s, 'utf8')]

/** A byte tokenizer with ChatML's markers as special tokens, and optionally a chat_template (as an HfTokenizer carries one). */
function chatTokenizer(chatTemplate?: string): Tokenizer {
  const t = new ByteTokenizer({ specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] })
  return chatTemplate === undefined ? t : Object.assign(t, { chatTemplate, chatTemplateFile: null, templateVariables: {} })
}

describe('rendering a conversation', () => {
  test('an instruction template: each past turn a record followed by the eos, the system prompt first as plain text', () => {
    const s = new ChatSession({ template: resolveTemplate(QA_TEMPLATE), tokenizer: bytes, contextLength: 64 })
    expect(s.chat).toBe(false)
    expect(s.render('red')).toEqual({ ids: utf8('Q: red\nA: '), text: 'Q: red\nA: ' })
    s.add('red', 'apple')
    const p = s.render('blue')
    expect(p.text).toBe('Q: red\nA: apple ENDQ: blue\nA: ')
    expect(p.ids).toEqual([...utf8('Q: red\nA: apple END'), bytes.eosId, ...utf8('Q: blue\nA: ')])
    s.system = 'Be brief.'
    expect(s.render('blue').text).toBe('Be brief.\n\nQ: red\nA: apple ENDQ: blue\nA: ')
    // The answer ends at the template's stop string or the eos (its text too: the tokenizer's
    // end-of-turn tokens are stops); nothing precedes it in the completion.
    expect(s.stopStrings).toEqual([' END', '<|endoftext|>'])
    expect(s.stopIds).toEqual([bytes.eosId])
    expect(s.answerPrefix).toBe('')
  })

  test('alpaca: the "\\n" before the answer is its prefix, removed from answers', () => {
    const s = new ChatSession({ template: resolveTemplate('alpaca'), tokenizer: bytes, contextLength: 1024 })
    expect(s.answerPrefix).toBe('\n')
    expect(s.cleanAnswer('\nParis. ')).toBe('Paris.')
    expect(s.stopStrings).toEqual(['### Instruction:', '<|endoftext|>'])
    expect(s.render('Name a city').text).toMatch(/### Instruction:\nName a city\n\n### Response:$/)
  })

  test('chatml: one chat record, system first; its end-of-turn marker is a stop string and, being a special token, a stop id', () => {
    const tok = chatTokenizer()
    const s = new ChatSession({ template: resolveTemplate('chatml'), tokenizer: tok, contextLength: 512, system: 'Be brief.' })
    expect(s.chat).toBe(true)
    s.add('Hi', 'Hello!')
    const p = s.render('Bye')
    expect(p.text).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n' +
      '<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n')
    expect(p.ids).toEqual(tok.encode(p.text))
    expect(p.ids.filter((id) => id === 257)).toHaveLength(5) // <|im_start|> as one token each time
    expect(s.stopStrings).toEqual(['<|im_end|>', '<|endoftext|>'])
    expect(s.stopIds).toEqual([tok.eosId, 258])
  })

  test("a model's Jinja chat_template renders the conversation; the text it closes answers with is a stop string", () => {
    const tok = chatTokenizer(CHAT_TEMPLATE)
    const template = resolveTemplate('chat_template', { tokenizer: tok })
    const s = new ChatSession({ template, tokenizer: tok, contextLength: 64 })
    expect(s.render('red').text).toBe('Q: red\nA: ')
    s.add('red', 'apple')
    s.system = 'caps'
    expect(s.render('again').text).toBe('S: caps\nQ: red\nA: apple END\nQ: again\nA: ')
    // its closing text, and the end-of-turn tokens the tokenizer has (a model trained on ChatML may still emit them)
    expect(s.stopStrings).toEqual([' END', '<|im_end|>', '<|endoftext|>'])
    expect(s.answerPrefix).toBe('')
  })
})

describe('keeping the history within the context', () => {
  // Each turn "Q: cN\nA: aN END" is 15 bytes + the eos: 16 tokens; a new message's prompt "Q: c9\nA: ", 9.
  const turn = (i: number) => ({ user: `c${i}`, assistant: `a${i}` })
  const session = (n: number) => {
    const s = new ChatSession({ template: resolveTemplate(QA_TEMPLATE), tokenizer: bytes, contextLength: 64 })
    for (let i = 0; i < n; i++) s.add(turn(i).user, turn(i).assistant)
    return s
  }

  test('the oldest turns go until prompt + max tokens fit; they are gone for good, and the count is reported', () => {
    expect(session(0).render('c9').ids).toHaveLength(9)
    expect(session(1).render('c9').ids).toHaveLength(25)
    const s = session(3) // 3·16 + 9 = 57 tokens
    const p = s.prepare('c9', 8) // 57 + 8 > 64: one turn goes (41 + 8 ≤ 64)
    expect(p.dropped).toBe(1)
    expect(p.ids).toHaveLength(41)
    expect(p.maxTokens).toBe(8)
    expect(s.turns.map((t) => t.user)).toEqual(['c1', 'c2'])
    expect(p.text.startsWith('Q: c1\n')).toBe(true)
    // max tokens beyond half the context reserve only half: the history is not emptied for a long answer.
    const t = session(1)
    const q = t.prepare('c9', 500)
    expect([q.dropped, q.ids.length, q.maxTokens]).toEqual([0, 25, 64 - 25])
    expect(session(3).prepare('c9', 500).dropped).toBe(2) // 57 + 32 > 64, 41 + 32 > 64, 25 + 32 ≤ 64
  })

  test('with no turn left the answer gets the room that remains; a message that fills the context is refused, nothing dropped', () => {
    const s = session(2)
    const long = 'x'.repeat(40) // 47 tokens alone
    const p = s.prepare(long, 32)
    expect([p.dropped, p.ids.length, p.maxTokens]).toEqual([2, 47, 17])
    const t = session(2)
    expect(() => t.prepare('x'.repeat(60), 8)).toThrow(ContextError)
    expect(() => t.prepare('x'.repeat(60), 8)).toThrow(/this message takes 67 tokens; the model's context holds 64/)
    expect(t.turns).toHaveLength(2)
    t.system = 'y'.repeat(30)
    expect(() => t.prepare('x'.repeat(30), 8)).toThrow(/the system prompt and this message take 69 tokens.*\/system/)
  })
})

describe('which template a chat uses', () => {
  const withChat = chatTokenizer(CHAT_TEMPLATE)
  test('--template, else the training template, else the model\'s chat_template, else chatml', () => {
    const meta = { template: QA_TEMPLATE, format: 'alpaca' as const, promptLossWeight: 0.1, maxLength: 64 }
    expect(chatTemplateOf({ flag: 'chatml', meta, tokenizer: withChat })).toMatchObject({ template: { name: 'chatml' }, from: '--template' })
    expect(chatTemplateOf({ flag: undefined, meta, tokenizer: withChat })).toMatchObject({ template: { name: 'custom' }, from: 'the training template' })
    expect(chatTemplateOf({ flag: undefined, meta: null, tokenizer: withChat }).template.name).toBe('chat_template')
    expect(chatTemplateOf({ flag: undefined, meta: null, tokenizer: bytes }).template.name).toBe('chatml')
    expect(chatTemplateOf({ flag: undefined, meta: { ...meta, template: 'auto' }, tokenizer: bytes }).template.name).toBe('alpaca')
  })
})

describe('input lines', () => {
  test('messages, and the commands', () => {
    expect(parseInput('hello')).toEqual({ kind: 'message', text: 'hello' })
    expect(parseInput('   ')).toEqual({ kind: 'empty' })
    expect(parseInput('//etc/hosts?')).toEqual({ kind: 'message', text: '/etc/hosts?' })
    expect(parseInput('/reset')).toEqual({ kind: 'reset' })
    expect(parseInput('/system You are terse.  ')).toEqual({ kind: 'system', text: 'You are terse.' })
    expect(parseInput('/system')).toEqual({ kind: 'system', text: null })
    expect(parseInput('/help')).toEqual({ kind: 'help' })
    expect(parseInput('/exit')).toEqual({ kind: 'exit' })
    expect(parseInput('/quit')).toEqual({ kind: 'exit' })
    expect(parseInput('/reset now')).toEqual({ kind: 'error', message: '/reset takes no arguments' })
    expect(parseInput('/rest')).toMatchObject({ kind: 'error', message: expect.stringMatching(/^unknown command \/rest \(did you mean \/reset\?\)/) })
  })

  test('/params sets temperature, top_p, top_k, max_tokens and seed; alone it shows them', () => {
    expect(parseInput('/params temperature=0.7 top_p=0.9 max_tokens=64 seed=1')).toEqual({ kind: 'params',
      set: { temperature: 0.7, topP: 0.9, maxTokens: 64, seed: 1 } })
    expect(parseInput('/params top-k=40, seed=random')).toEqual({ kind: 'params', set: { topK: 40, seed: null } })
    expect(parseInput('/params')).toEqual({ kind: 'show-params' })
    expect(describeParams({ temperature: 0, topP: 1, topK: 0, maxTokens: 8, seed: null })).toBe('temperature=0 top_p=1 top_k=0 max_tokens=8 seed=random')
  })

  test('/params reports every bad value at once, naming the key and what it takes', () => {
    const r = parseInput('/params temperature=-1 top_p=0 top_k=1.5 max_tokens=0 seed=x tempreature=1 verbose')
    expect(r.kind).toBe('error')
    const message = (r as { message: string }).message
    expect(message.startsWith('/params: ')).toBe(true)
    for (const part of [
      'temperature: expected a number ≥ 0 (0 is greedy), received "-1"',
      'top_p: expected a number in (0, 1], received "0"',
      'top_k: expected an integer ≥ 0 (0: all tokens), received "1.5"',
      'max_tokens: expected an integer ≥ 1, received "0"',
      'seed: expected an integer ≥ 0, or random, received "x"',
      'unknown parameter "tempreature" (did you mean temperature?)',
      'expected key=value, received "verbose"',
    ]) expect(message).toContain(part)
    expect(parseInput('/params top_p=abc')).toEqual({ kind: 'error', message: '/params: top_p: expected a number in (0, 1], received "abc"' })
  })
})
