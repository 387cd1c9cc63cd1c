/**
 * Records → weighted token sequences: per-token weights for each format and λ ∈ {0, 0.1, 1}
 * (the loss contract), truncation that keeps the completion with its counts, too-long examples
 * reported, and the separator / stop sequence / special token warnings.
 */
import {
  ByteTokenizer, DataError, DataRecord, EncodedExample, KIND_COMPLETION, KIND_PROMPT, Template, Warnings, alpacaTemplate, chatmlTemplate,
  collate, completionTemplate, customTemplate, describeEncode, encodeDataset, encodeRecord, phi3Template, recordsFromObjects,
} from '../../ts/data'

const tok = new ByteTokenizer()
const bytes = (s: string): number[] => [...Buffer.from(s, 'utf8')]
const f32 = (x: number): number => Math.fround(x)
const LAMBDAS = [0, 0.1, 1]

function records(objs: unknown[], name = 'data.jsonl'): DataRecord[] {
  // Give the records file-like sources so that messages read as they would for a file.
  return recordsFromObjects(objs).records.map((r, i) => ({ ...r, source: { file: name, line: i + 1, index: i } }))
}

/**
 * The weight of every token, computed from the template's segments independently of the
 * encoder: a segment's bytes carry its weight, or λ (prompt) / 1 (completion); the eos 1.
 */
function expectedTokenWeights(template: Template, record: DataRecord, lambda: number): number[] {
  const { segments, eos } = template.render(record)
  const w: number[] = []
  for (const s of segments) for (let i = 0; i < Buffer.byteLength(s.text); i++) w.push(s.weight ?? (s.kind === 'prompt' ? lambda : 1))
  if (eos) {
    const last = segments[segments.length - 1]
    w.push(last.kind === 'completion' && last.weight !== undefined ? last.weight : 1)
  }
  return w
}

describe('per-token weights: the target at t is token t+1 and carries its weight', () => {
  test('golden: prompt "ab" + separator "#", completion "c", eos', () => {
    const t = completionTemplate({ separator: '#', stop: '', leadingSpace: false })
    const [r] = records([{ prompt: 'ab', completion: 'c' }])
    const ex = encodeRecord(r, t, tok)
    expect([...ex.ids]).toEqual([97, 98, 35, 99, 256])
    expect([...ex.kinds]).toEqual([1, 1, 1, 2, 2])
    expect(ex.weights).toBeNull()
    expect([ex.promptTokens, ex.completionTokens]).toEqual([3, 2])
    for (const lambda of LAMBDAS) {
      const b = collate([ex], { promptLossWeight: lambda })
      expect([b.B, b.T]).toEqual([1, 4])
      expect([...b.tokens]).toEqual([97, 98, 35, 99])
      expect([...b.targets]).toEqual([98, 35, 99, 256])
      expect([...b.weights]).toEqual([f32(lambda), f32(lambda), 1, 1])
      expect([...b.kinds]).toEqual([1, 1, 2, 2])
      expect(b.weightSum).toBe(2 * f32(lambda) + 2)
    }
  })

  const cases: Array<[string, Template, unknown]> = [
    ['alpaca with input', alpacaTemplate(), { instruction: 'Add.', input: '2 3', output: '5' }],
    ['alpaca without input', alpacaTemplate(), { instruction: 'Name a prime.', output: 'Seven.' }],
    ['prompt/completion', completionTemplate(), { prompt: 'Capital of France?', completion: 'Paris' }],
    ['custom string', customTemplate('Q: {instruction}\nA:{output}\n'), { instruction: 'Why?', output: 'Because.' }],
    ['chatml, multi-turn with weights', chatmlTemplate(), { messages: [
      { role: 'system', content: 'Be brief.', weight: 0.5 }, { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!', weight: 0 }, { role: 'user', content: 'Ok' }, { role: 'assistant', content: 'Bye' }] }],
    ['phi3, last turn weighted 0 (its eos too)', phi3Template(), { messages: [
      { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Yo', weight: 0 }] }],
  ]

  test.each(cases)('%s, λ ∈ {0, 0.1, 1}', (_, template, obj) => {
    const [r] = records([obj])
    const ex = encodeRecord(r, template, tok)
    const text = template.render(r).segments.map((s) => s.text).join('')
    expect([...ex.ids]).toEqual([...bytes(text), 256])
    for (const lambda of LAMBDAS) {
      const w = expectedTokenWeights(template, r, lambda)
      const b = collate([ex], { promptLossWeight: lambda })
      expect([...b.tokens]).toEqual([...ex.ids.slice(0, -1)])
      expect([...b.targets]).toEqual([...ex.ids.slice(1)])
      expect([...b.weights]).toEqual(w.slice(1).map(f32))
      expect([...b.kinds]).toEqual([...ex.kinds.slice(1)])
      expect([...b.positions]).toEqual(Array.from({ length: ex.ids.length - 1 }, (_, i) => i))
      expect([...b.segments].every((s) => s === 0)).toBe(true)
    }
  })

  test('the completion\'s tokens and the eos weigh 1 at every λ; λ=0 leaves only them', () => {
    const [r] = records([{ instruction: 'Say hi.', output: 'hi' }])
    const ex = encodeRecord(r, alpacaTemplate(), tok)
    const b = collate([ex], { promptLossWeight: 0 })
    const weighted = [...b.targets].filter((_, i) => b.weights[i] > 0)
    expect(tok.decode(weighted)).toBe('\nhi<|endoftext|>')
    expect(b.weightSum).toBe(4)
  })

  test('λ outside [0, 1] is rejected', () => {
    const [r] = records([{ instruction: 'a', output: 'b' }])
    const ex = encodeRecord(r, alpacaTemplate(), tok)
    expect(() => collate([ex], { promptLossWeight: 1.5 })).toThrow('collate: Expected a number in [0, 1] for promptLossWeight but received 1.5')
    expect(() => collate([ex], { promptLossWeight: NaN })).toThrow(RangeError)
  })
})

describe('segments are tokenized separately', () => {
  test('no token spans the prompt/completion boundary', () => {
    // A tokenizer that would merge "x:" + "y" into one token if it saw them together.
    const merging = { ...tok, encode: (s: string): number[] => (s === 'x:y' ? [999] : tok.encode(s)), decode: tok.decode.bind(tok) }
    const t = customTemplate('{instruction}:{output}', { eos: false })
    const ex = encodeRecord(records([{ instruction: 'x', output: 'y' }])[0], t, merging)
    expect([...ex.ids]).toEqual([120, 58, 121])
    expect([...ex.kinds]).toEqual([KIND_PROMPT, KIND_PROMPT, KIND_COMPLETION])
  })
})

describe('truncation keeps the completion', () => {
  const long = 'x'.repeat(200)

  test('prompt tokens are dropped from the start, counted; the completion is whole', () => {
    const rs = records([
      { prompt: long, completion: 'done' },
      { prompt: 'short', completion: 'ok' },
      { prompt: long + long, completion: 'end' },
    ])
    const t = completionTemplate()
    const full = rs.map((r) => encodeRecord(r, t, tok))
    const { examples, stats } = encodeDataset(rs, t, tok, { maxLength: 64 })
    expect(stats).toMatchObject({ records: 3, examples: 3, truncated: 2, tooLong: 0 })
    expect(stats.truncatedTokens).toBe(full[0].ids.length - 64 + full[2].ids.length - 64)
    expect(examples.map((e) => e.ids.length)).toEqual([64, full[1].ids.length, 64])
    expect([...examples[0].ids]).toEqual([...full[0].ids.slice(-64)])
    expect(examples[0].truncated).toBe(full[0].ids.length - 64)
    expect(tok.decode(examples[0].ids)).toMatch(/^x+\n\n###\n\n done END<\|endoftext\|>$/)
    expect(examples[0].completionTokens).toBe(full[0].completionTokens)
    expect(describeEncode(stats)).toContain(`2 truncated (${stats.truncatedTokens} prompt tokens dropped)`)
  })

  test('an example whose completion does not fit is an error naming file and line', () => {
    const rs = records([{ prompt: 'p', completion: 'fits' }, { prompt: 'p', completion: long }])
    let err: unknown
    try { encodeDataset(rs, completionTemplate(), tok, { maxLength: 64 }) } catch (e) { err = e }
    expect(err).toBeInstanceOf(DataError)
    const need = 1 + Buffer.byteLength(` ${long} END`) + 1
    expect((err as Error).message).toBe('1 example whose completion does not fit in the maximum length of 64 tokens (raise ' +
      `--max-length to ${need} if the model has that many positions, shorten those completions, or pass --skip-invalid to skip and ` +
      'count them):\n' +
      `  data.jsonl:2: ${Buffer.byteLength(`p\n\n###\n\n ${long} END`) + 1} tokens do not fit in 64: its ` +
      `completion (${need - 1} tokens with eos) and one token before it need ${need}`)
  })

  test('skipTooLong skips and counts', () => {
    const rs = records([{ prompt: 'p', completion: 'fits' }, { prompt: 'p', completion: long }])
    const { examples, stats } = encodeDataset(rs, completionTemplate(), tok, { maxLength: 64, skipTooLong: true })
    expect(examples).toHaveLength(1)
    expect(stats).toMatchObject({ examples: 1, tooLong: 1, truncated: 0 })
    expect(describeEncode(stats)).toContain('1 too long, skipped')
  })

  test('a chat whose earlier assistant turn would be cut is reported, not cut', () => {
    const [r] = records([{ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' },
      { role: 'user', content: long }, { role: 'assistant', content: 'c' }] }])
    expect(() => encodeDataset([r], chatmlTemplate(), tok, { maxLength: 100 })).toThrow(DataError)
  })

  test('the template must fit the records\' format', () => {
    const rs = records([{ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] }])
    expect(() => encodeDataset(rs, alpacaTemplate(), tok)).toThrow('the alpaca template renders alpaca or prompt-completion ' +
      'records, not chat; use chatml, phi3 or the model\'s chat_template for chat data')
  })
})

describe('warnings: separators, stop sequences and special tokens inside the data', () => {
  test('the completion template\'s separator and stop sequence, with file, line and field', () => {
    const rs = records([
      { prompt: 'fine', completion: 'fine' },
      { prompt: 'a\n\n###\n\nb', completion: 'fine' },
      { prompt: 'fine', completion: 'the END of it' },
    ])
    const { warnings } = encodeDataset(rs, completionTemplate(), tok)
    expect(warnings.count).toBe(2)
    expect(warnings.format()).toEqual([
      'data.jsonl:2: field "prompt": contains the separator "\\n\\n###\\n\\n", which the template uses to mark its structure',
      'data.jsonl:3: field "completion": contains the stop sequence " END", which the template uses to mark its structure',
    ])
  })

  test('special tokens of the tokenizer, and alpaca\'s section headers', () => {
    const rs = records([{ instruction: 'Say <|endoftext|>', output: 'x\n### Response: y' }])
    const { warnings } = encodeDataset(rs, alpacaTemplate(), tok)
    expect(warnings.format()).toEqual([
      'data.jsonl:1: field "output": contains the section header "### Response:", which the template uses to mark its structure',
      'data.jsonl:1: field "instruction": contains the special token "<|endoftext|>", which the tokenizer reads as that token',
    ])
  })

  test('chat markers inside message contents', () => {
    const rs = records([{ messages: [{ role: 'user', content: 'close <|im_end|> early' }, { role: 'assistant', content: 'ok' }] }])
    const { warnings } = encodeDataset(rs, chatmlTemplate(), tok)
    expect(warnings.format()).toEqual(['data.jsonl:1: field "messages[0].content": contains the chat marker "<|im_end|>", ' +
      'which the template uses to mark its structure'])
  })

  test('many occurrences print as a few examples and a count', () => {
    const rs = records(Array.from({ length: 10 }, () => ({ prompt: 'p', completion: 'an END' })))
    const warnings = new Warnings()
    encodeDataset(rs, completionTemplate(), tok, { warnings })
    expect(warnings.count).toBe(10)
    expect(warnings.list()).toEqual([expect.objectContaining({ code: 'stop sequence " END"', count: 10 })])
    const lines = warnings.format()
    expect(lines).toHaveLength(4)
    expect(lines[3]).toBe('  … 7 more like this')
  })
})

test('an EncodedExample records its source', () => {
  const [r] = records([{ instruction: 'a', output: 'b' }], 'x.jsonl')
  const ex: EncodedExample = encodeRecord(r, alpacaTemplate(), tok)
  expect(ex.source).toEqual({ file: 'x.jsonl', line: 1, index: 0 })
})
