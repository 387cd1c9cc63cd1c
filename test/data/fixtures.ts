/** Small data the data-layer suites build for themselves: temp files and a tiny byte-level BPE tokenizer.json. */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

/** A fresh temporary directory, removed when the process exits. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plwtune-data-'))
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Writes `name` in `dir` and returns its path. */
export function writeFile(dir: string, name: string, text: string): string {
  const file = path.join(dir, name)
  fs.writeFileSync(file, text)
  return file
}

/** JSON Lines from objects (or raw strings for lines that are not JSON). */
export function jsonl(lines: Array<unknown>): string {
  return lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n'
}

/** GPT-2's bytes_to_unicode, written independently of the code under test. */
export function gpt2ByteChars(): string[] {
  const bs: number[] = []
  for (let b = 33; b <= 126; b++) bs.push(b)
  for (let b = 161; b <= 172; b++) bs.push(b)
  for (let b = 174; b <= 255; b++) bs.push(b)
  const cs = bs.slice()
  let n = 0
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++) }
  const out = new Array<string>(256)
  bs.forEach((b, i) => { out[b] = String.fromCharCode(cs[i]) })
  return out
}

/**
 * A GPT-2-style tokenizer.json: 256 byte tokens, the given merges (in byte-alphabet spelling,
 * e.g. 'Ġ t'), their results, and special tokens after them.
 */
export function tinyBpeTokenizer(merges: string[], specials: string[] = ['<|endoftext|>'],
  format: 'strings' | 'pairs' = 'strings'): Record<string, unknown> {
  const vocab: Record<string, number> = {}
  gpt2ByteChars().forEach((c) => { vocab[c] = Object.keys(vocab).length })
  for (const m of merges) {
    const [a, b] = m.split(' ')
    if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }
  let next = Object.keys(vocab).length
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content) => ({
      id: next++, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, vocab,
      merges: format === 'strings' ? merges : merges.map((m) => m.split(' ')),
    },
  }
}

/** Merges that make common English pieces single tokens in tinyBpeTokenizer. */
export const TINY_MERGES = [
  'Ġ t', 'h e', 'Ġt he', 'i n', 'Ġ a', 'e r', 'o n', 'Ġ s', 'a n', 'Ġ w', 'r e', 'Ġ o', 'in g', 'Ġa n', 'Ġan d',
  'Ċ Ċ', '# #', '## #', 'Ġ #', 'Ġ# ##', 'Ġ R', 'e s', 'Ġ I', 'o u', 'Ġ 1', 'Ġ1 2', '1 2',
]
