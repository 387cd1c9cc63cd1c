/**
 * Dataset readers: every format from JSON and JSON Lines, format detection and override, and
 * every bad-input message naming file, line and field.
 */
import * as fs from 'node:fs'
import { DataError, readDataset, recordsFromObjects, describeRead, ChatRecord, AlpacaRecord } from '../../ts/data'
import { jsonl, tempDir, writeFile } from './fixtures'

const dir = tempDir()

async function readError(file: string, options = {}): Promise<DataError> {
  try {
    await readDataset(file, options)
  } catch (err) {
    expect(err).toBeInstanceOf(DataError)
    return err as DataError
  }
  throw new Error('expected a DataError')
}

describe('formats', () => {
  test('alpaca JSON array: input optional, null or empty; lines of each element', async () => {
    const text = '[\n' +
      '  {"instruction": "Say hi.", "input": "", "output": "hi"},\n' +
      '  {\n    "instruction": "Add.",\n    "input": "1 2",\n    "output": "3"\n  },\n' +
      '  {"instruction": "No input key.", "output": "ok", "id": 7},\n' +
      '  {"instruction": "Null input.", "input": null, "output": "ok"}\n' +
      ']\n'
    const { records, summary } = await readDataset(writeFile(dir, 'a.json', text))
    expect(summary).toMatchObject({ format: 'alpaca', formatFrom: 'detected', records: 4, valid: 4, invalid: 0 })
    expect(records.map((r) => r.source.line)).toEqual([2, 3, 8, 9])
    expect(records.map((r) => (r as AlpacaRecord).input)).toEqual(['', '1 2', '', ''])
    expect(records[1]).toEqual({ format: 'alpaca', instruction: 'Add.', input: '1 2', output: '3',
      source: { file: expect.stringContaining('a.json'), line: 3, index: 1 } })
    expect(describeRead(summary)).toMatch(/4 records \(alpaca, detected\)$/)
  })

  test('alpaca JSONL with a BOM, CRLF line ends and blank lines', async () => {
    const text = '\ufeff{"instruction": "a", "output": "b"}\r\n\r\n{"instruction": "c", "input": "d", "output": "e"}\r\n'
    const { records } = await readDataset(writeFile(dir, 'a.jsonl', text))
    expect(records).toHaveLength(2)
    expect(records[1]).toMatchObject({ instruction: 'c', input: 'd', output: 'e', source: { line: 3, index: 1 } })
  })

  test('prompt/completion JSONL', async () => {
    const { records, summary } = await readDataset(writeFile(dir, 'pc.jsonl', jsonl([
      { prompt: 'Q: 1+1?', completion: '2' }, { prompt: 'Q: 2+2?', completion: '4' },
    ])))
    expect(summary.format).toBe('prompt-completion')
    expect(records[1]).toMatchObject({ format: 'prompt-completion', prompt: 'Q: 2+2?', completion: '4' })
  })

  test('chat JSONL with per-message weights', async () => {
    const { records, summary } = await readDataset(writeFile(dir, 'chat.jsonl', jsonl([
      { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello', weight: 0 },
        { role: 'user', content: 'Bye' }, { role: 'assistant', content: 'Bye!' }] },
    ])))
    expect(summary.format).toBe('chat')
    const r = records[0] as ChatRecord
    expect(r.messages).toHaveLength(5)
    expect(r.messages[2]).toEqual({ role: 'assistant', content: 'Hello', weight: 0 })
    expect(r.messages[4]).toEqual({ role: 'assistant', content: 'Bye!' })
  })

  test('the format can be given, overriding detection', async () => {
    const file = writeFile(dir, 'both.jsonl', jsonl([{ prompt: 'p', completion: 'c', instruction: 'i', output: 'o' }]))
    expect((await readDataset(file)).summary.format).toBe('prompt-completion')
    const { records, summary } = await readDataset(file, { format: 'alpaca' })
    expect(summary).toMatchObject({ format: 'alpaca', formatFrom: 'given' })
    expect(records[0]).toMatchObject({ instruction: 'i', output: 'o' })
    await expect(readDataset(file, { format: 'nope' as never })).rejects.toThrow(TypeError)
  })

  test('JSON Lines are streamed: a file far larger than one read chunk, line numbers intact', async () => {
    const n = 20000
    const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ instruction: `task ${i}`, output: 'x'.repeat(i % 50) }))
    const file = writeFile(dir, 'big.jsonl', lines.join('\n'))
    expect(fs.statSync(file).size).toBeGreaterThan(64 * 1024 * 4)
    const { records } = await readDataset(file)
    expect(records).toHaveLength(n)
    expect(records[n - 1].source.line).toBe(n)
    expect((records[12345] as AlpacaRecord).instruction).toBe('task 12345')
  })

  test('in-memory records are named <data>[index]', () => {
    const { records } = recordsFromObjects([{ instruction: 'a', output: 'b' }])
    expect(records[0].source).toEqual({ file: '<data>', index: 0 })
    expect(() => recordsFromObjects([{ instruction: 'a', output: 1 }])).toThrow('<data>[0]: field "output": expected a string, received number')
  })
})

describe('bad input is reported with file, line, field and why', () => {
  test('wrong types, missing fields, bad JSON, non-objects: all listed, with the count', async () => {
    const file = writeFile(dir, 'bad.jsonl', jsonl([
      { instruction: 'ok', output: 'fine' },
      { instruction: 'x', output: 42 },
      { instruction: 'x' },
      '{"instruction": "x", "output": "y",}',
      '[1, 2]',
      { instruction: '  ', output: 'y' },
      { instruction: 'x', input: 5, output: 'y' },
      { instruction: 7, output: null },
    ]))
    const err = await readError(file)
    expect(err.message).toContain(`${file}: 7 invalid records of 8, format alpaca detected from ${file}:1`)
    expect(err.message).toContain('--skip-invalid')
    const lines = err.message.split('\n').slice(1).map((l) => l.trim())
    // V8's own words for the JSON syntax error vary between Node versions.
    expect(lines[2]).toMatch(new RegExp(`^${file}:4: invalid JSON: .*position 35`))
    lines[2] = 'JSON'
    expect(lines).toEqual([
      `${file}:2: field "output": expected a string, received number`,
      `${file}:3: field "output": missing, expected a string (an alpaca record has "instruction", "output" (and optional "input"))`,
      'JSON',
      `${file}:5: expected a JSON object, received array`,
      `${file}:6: field "instruction": expected a non-empty string, received an empty one`,
      `${file}:7: field "input": expected a string, received number`,
      `${file}:8: field "instruction": expected a string, received number`,
      `${file}:8: field "output": expected a string, received null`,
    ])
    expect(err.count).toBe(8)
    expect(err.problems[0]).toEqual({ source: { file, line: 2, index: 1 }, field: 'output', message: 'expected a string, received number' })
  })

  test('skipInvalid skips and counts', async () => {
    const file = writeFile(dir, 'skip.jsonl', jsonl([{ instruction: 'a', output: 'b' }, { instruction: 'a', output: 3 }, 'nope']))
    const { records, summary } = await readDataset(file, { skipInvalid: true })
    expect(records).toHaveLength(1)
    expect(summary).toMatchObject({ records: 3, valid: 1, invalid: 2, problemCount: 2 })
    expect(describeRead(summary)).toMatch(/1 records \(alpaca, detected\), 2 invalid skipped$/)
  })

  test('invalid UTF-8 is reported by file, line and byte (Node would decode it as U+FFFD silently), or skipped', async () => {
    const good = Buffer.from(JSON.stringify({ instruction: 'café', output: 'ok' }) + '\n', 'utf8')
    const bad = Buffer.concat([Buffer.from('{"instruction": "caf'), Buffer.from([0xe9]), Buffer.from('", "output": "x"}\n')]) // latin1 é
    const file = `${dir}/latin1.jsonl`
    fs.writeFileSync(file, Buffer.concat([good, bad, good]))
    const err = await readError(file)
    expect(err.message).toContain(`${file}:2: invalid UTF-8 at byte 21 of the line`)
    const { records, summary } = await readDataset(file, { skipInvalid: true })
    expect(records.map((r) => (r as AlpacaRecord).instruction)).toEqual(['café', 'café'])
    expect(summary).toMatchObject({ valid: 2, invalid: 1 })
    const array = `${dir}/latin1.json`
    fs.writeFileSync(array, Buffer.concat([Buffer.from('[\n'), bad.subarray(0, bad.length - 1), Buffer.from('\n]\n')]))
    await expect(readDataset(array)).rejects.toThrow(`${array}:2: invalid UTF-8 at byte 21 of the line`)
  })

  test('the message lists the first 20 problems and the count of the rest', async () => {
    const file = writeFile(dir, 'many.jsonl', jsonl(Array.from({ length: 30 }, () => ({ instruction: 'a', output: 1 }))))
    const err = await readError(file)
    expect(err.message.split('\n').filter((l) => l.includes('field "output"'))).toHaveLength(20)
    expect(err.message).toContain('… and 10 more')
    expect(err.count).toBe(30)
    expect(err.problems).toHaveLength(30)
  })

  test('chat: roles, contents, weights, the last message', async () => {
    const file = writeFile(dir, 'badchat.jsonl', jsonl([
      { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] },
      { messages: [{ role: 'bot', content: 'hi' }] },
      { messages: [{ role: 'user', content: 3 }, { role: 'assistant', content: 'x', weight: 2 }] },
      { messages: [{ role: 'user', content: 'hi' }] },
      { messages: [] },
      { messages: 'hello' },
      { messages: ['hello', { content: 'x' }, { role: 'assistant', content: 'x', weight: 'high' }] },
    ]))
    const err = await readError(file)
    const lines = err.message.split('\n').slice(1).map((l) => l.trim())
    expect(lines).toEqual([
      `${file}:2: field "messages[0].role": expected one of system, user, assistant, received "bot"`,
      `${file}:3: field "messages[0].content": expected a string, received number`,
      `${file}:3: field "messages[1].weight": expected a number in [0, 1], received 2`,
      `${file}:4: field "messages": the last message must be the assistant's (the completion to learn), received "user"`,
      `${file}:5: field "messages": expected at least one message, received an empty array`,
      `${file}:6: field "messages": expected an array, received string`,
      `${file}:7: field "messages[0]": expected an object {role, content}, received string`,
      `${file}:7: field "messages[1].role": missing, expected one of system, user, assistant`,
      `${file}:7: field "messages[2].weight": expected a number in [0, 1], received string`,
    ])
  })

  test('prompt/completion: missing and mistyped fields', async () => {
    const file = writeFile(dir, 'badpc.jsonl', jsonl([{ prompt: 'a', completion: 'b' }, { prompt: 'a' }, { prompt: ['a'], completion: 'b' }]))
    const err = await readError(file, { format: 'prompt-completion' })
    expect(err.message).toContain(`${file}:2: field "completion": missing, expected a string (a prompt-completion record has "prompt", "completion")`)
    expect(err.message).toContain(`${file}:3: field "prompt": expected a string, received array`)
  })

  test('a JSON array with a syntax error names the line', async () => {
    const file = writeFile(dir, 'broken.json', '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    const err = await readError(file)
    expect(err.message).toMatch(new RegExp(`^${file}:3: invalid JSON: [^\n]+$`))
    expect(err.message).not.toContain('position')
  })

  test('a JSON array element of the wrong type names its line', async () => {
    const file = writeFile(dir, 'elem.json', '[\n  {"instruction": "a", "output": "b"},\n  "text",\n  {"instruction": "a",\n   "output": false}\n]')
    const err = await readError(file)
    expect(err.message).toContain(`${file}:3: expected a JSON object, received string`)
    expect(err.message).toContain(`${file}:4: field "output": expected a string, received boolean`)
  })

  test('an undetectable first record says what it expected and found', async () => {
    const file = writeFile(dir, 'what.jsonl', jsonl([{ question: 'a', answer: 'b' }]))
    const err = await readError(file)
    expect(err.message).toBe(`${file}:1: cannot tell the dataset's format from its first record: expected "instruction", ` +
      '"output" (and optional "input"), or "prompt", "completion", or "messages"; found keys "question", "answer" ' +
      '(pass format: alpaca | prompt-completion | chat to choose one)')
  })

  test('a record of another format than the file\'s', async () => {
    const file = writeFile(dir, 'mixed.jsonl', jsonl([{ instruction: 'a', output: 'b' }, { messages: [{ role: 'user', content: 'x' }] }]))
    const err = await readError(file)
    expect(err.message).toContain(`${file}:2: field "instruction": missing, expected a string`)
  })

  test('missing file, empty file, not an array', async () => {
    expect((await readError(`${dir}/nope.jsonl`)).message).toBe(`${dir}/nope.jsonl: cannot open the dataset (no such file)`)
    expect((await readError(writeFile(dir, 'empty.jsonl', '\n\n'))).message).toMatch(/empty\.jsonl: no records$/)
    expect((await readError(writeFile(dir, 'obj.json', '{"instruction": "a",\n "output": "b"}'))).message)
      .toContain('obj.json:1: invalid JSON')
  })
})
