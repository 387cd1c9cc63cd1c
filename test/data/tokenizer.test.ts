/**
 * Tokenizers: the built-in byte tokenizer, and a model directory's tokenizer.json run through
 * @huggingface/tokenizers — with our byte-level BPE fast path checked against the library
 * token for token. The tokenizer.json files are built here (tiny GPT-2-style BPE).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Tokenizer as LibTokenizer } from '@huggingface/tokenizers'
import { ByteTokenizer, HfTokenizer, resolveTemplate } from '../../ts/data'
import { TINY_MERGES, tempDir, tinyBpeTokenizer, writeFile } from './fixtures'

const TEXTS = [
  'the cat and the hat', 'Hello, World!  Two  spaces;\ttab\nnewline\n\n\nthree', "it's we'll they're I'M you've",
  'ünïcödé 日本語 😀🎉 ’curly’ — dash', '12 123 1234567 3.14', '### Response:\nThe answer is 12.', '  leading and trailing  ',
  '\u00a0nbsp\r\ncrlf', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', '', ' ', '\n',
]

describe('ByteTokenizer', () => {
  const tok = new ByteTokenizer()

  test('ids are UTF-8 bytes; eos is 256; vocabulary 257', () => {
    expect(tok.encode('Hi é😀')).toEqual([...Buffer.from('Hi é😀', 'utf8')])
    expect(tok.eosId).toBe(256)
    expect(tok.vocabSize).toBe(257)
    for (const t of TEXTS) expect(tok.decode(tok.encode(t))).toBe(t)
  })

  test('special tokens inside text are read as their ids, and decode back', () => {
    const t = new ByteTokenizer({ specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] })
    expect(t.vocabSize).toBe(259)
    expect(t.encode('a<|im_start|>b<|endoftext|>')).toEqual([97, 257, 98, 256])
    expect(t.decode([97, 258, 256])).toBe('a<|im_end|><|endoftext|>')
    expect(t.encode('<|im_star')).toEqual([...Buffer.from('<|im_star')])
  })

  test('lone surrogates encode as U+FFFD, like Buffer.from', () => {
    expect(tok.encode('a\ud800b')).toEqual([...Buffer.from('a\ud800b', 'utf8')])
    expect(tok.encode('\udc00')).toEqual([...Buffer.from('\udc00', 'utf8')])
  })

  test('bad ids and options are errors', () => {
    expect(() => tok.decode([257])).toThrow('ByteTokenizer.decode: Expected ids in [0, 257) but received 257 at 0')
    expect(() => tok.decode([-1])).toThrow(RangeError)
    expect(() => new ByteTokenizer({ specialTokens: [] })).toThrow(RangeError)
    expect(() => new ByteTokenizer({ specialTokens: ['a', 'a'] })).toThrow(RangeError)
  })
})

describe('HfTokenizer on a tokenizer.json', () => {
  const dir = tempDir()
  const json = tinyBpeTokenizer(TINY_MERGES)
  const lib = new LibTokenizer(json, {})

  test('the byte-level BPE fast path agrees with @huggingface/tokenizers', () => {
    const ours = new HfTokenizer({ tokenizer: json })
    expect(ours.fastPath).toBe(true)
    for (const t of TEXTS) expect(ours.encode(t)).toEqual(lib.encode(t, { add_special_tokens: false }).ids)
    const merged = ours.encode(' the')
    expect(merged).toHaveLength(1) // 'Ġ t' then 'Ġt he'
    for (const t of TEXTS) expect(ours.decode(ours.encode(t))).toBe(t)
  })

  test('merges as [a, b] pairs (newer tokenizer.json) read the same', () => {
    const pairs = new HfTokenizer({ tokenizer: tinyBpeTokenizer(TINY_MERGES, ['<|endoftext|>'], 'pairs') })
    const strings = new HfTokenizer({ tokenizer: json })
    for (const t of TEXTS) expect(pairs.encode(t)).toEqual(strings.encode(t))
  })

  test('texts holding a special token go through the library: the token is one id', () => {
    const ours = new HfTokenizer({ tokenizer: json })
    const eos = ours.eosId
    expect(ours.encode('the end<|endoftext|>')).toEqual([...ours.encode('the end'), eos])
    expect(ours.specialTokens).toEqual(['<|endoftext|>'])
  })

  test('a configuration the fast path does not cover runs in the library', () => {
    const lowercase = { ...json, normalizer: { type: 'Lowercase' } }
    const t = new HfTokenizer({ tokenizer: lowercase })
    expect(t.fastPath).toBe(false)
    expect(t.encode('THE Hat')).toEqual(new HfTokenizer({ tokenizer: json }).encode('the hat'))
  })

  test('fromDir: eos and chat_template from tokenizer_config.json; vocabulary size', async () => {
    const model = path.join(dir, 'model')
    fs.mkdirSync(model)
    const chat = tinyBpeTokenizer(TINY_MERGES, ['<|endoftext|>', '<|im_start|>', '<|im_end|>'])
    writeFile(model, 'tokenizer.json', JSON.stringify(chat))
    writeFile(model, 'tokenizer_config.json', JSON.stringify({
      eos_token: { content: '<|im_end|>' }, bos_token: '<|endoftext|>',
      chat_template: "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}",
    }))
    const t = await HfTokenizer.fromDir(model)
    const base = 256 + TINY_MERGES.length
    expect(t.vocabSize).toBe(base + 3)
    expect(t.eosToken).toBe('<|im_end|>')
    expect(t.eosId).toBe(base + 2)
    expect(t.templateVariables).toEqual({ eos_token: '<|im_end|>', bos_token: '<|endoftext|>' })
    const template = resolveTemplate(undefined, { format: 'chat', tokenizer: t })
    expect(template.name).toBe('chat_template')
    expect(template.markers.map((m) => m.text)).toEqual(['<|endoftext|>', '<|im_start|>', '<|im_end|>'])
    // chat_template.jinja, as newer transformers save it, wins over the config's.
    writeFile(model, 'chat_template.jinja', '{{ messages[0].content }}')
    expect((await HfTokenizer.fromDir(model)).chatTemplate).toBe('{{ messages[0].content }}')
  })

  test('without a config, eos falls back to <|endoftext|>; missing or broken files are clear errors', async () => {
    expect(new HfTokenizer({ tokenizer: json }).eosToken).toBe('<|endoftext|>')
    expect(() => new HfTokenizer({ tokenizer: tinyBpeTokenizer(TINY_MERGES, []) }))
      .toThrow('tokenizer: no end-of-sequence token: tokenizer_config.json names no eos_token')
    expect(() => new HfTokenizer({ tokenizer: json, config: { eos_token: '<eos>' } }))
      .toThrow('tokenizer: no end-of-sequence token: eos_token "<eos>" is not in the vocabulary')
    await expect(HfTokenizer.fromDir(path.join(dir, 'none'))).rejects.toThrow(/none\/tokenizer\.json: cannot read the tokenizer/)
    const broken = path.join(dir, 'broken')
    fs.mkdirSync(broken)
    writeFile(broken, 'tokenizer.json', '{')
    await expect(HfTokenizer.fromDir(broken)).rejects.toThrow(/broken\/tokenizer\.json: invalid JSON/)
  })
})
