/**
 * Tokenizer files for a saved model directory: the model's own are copied; the demo's byte
 * tokenizer is written as a Hugging Face tokenizer.json (byte-level BPE with no merges:
 * each byte is one token, id = the byte value, as ByteTokenizer numbers them), so the
 * exported directory loads in transformers with AutoTokenizer as well as here.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { writeFileSynced } from '../atomic-write'

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json',
  'merges.txt', 'chat_template.jinja']

/** GPT-2's byte ↔ printable-character table (the ByteLevel pre-tokenizer's alphabet). */
export function bytesToUnicode(): string[] {
  const bs: number[] = []
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b)
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b)
  for (let b = 0xae; b <= 0xff; b++) bs.push(b)
  const cs = [...bs]
  let n = 0
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b)
      cs.push(256 + n++)
    }
  }
  const out = new Array<string>(256)
  bs.forEach((b, i) => { out[b] = String.fromCodePoint(cs[i]) })
  return out
}

export function byteTokenizerFiles(specialTokens: readonly string[], maxLength: number): Record<string, unknown> {
  const chars = bytesToUnicode()
  const vocab: Record<string, number> = {}
  chars.forEach((c, b) => { vocab[c] = b })
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specialTokens.map((content, i) => ({
      id: 256 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [],
    },
  }
  const eos = specialTokens[0]
  const config = {
    tokenizer_class: 'PreTrainedTokenizerFast', model_max_length: maxLength,
    bos_token: eos, eos_token: eos, unk_token: eos, pad_token: eos,
  }
  return { 'tokenizer.json': tokenizer, 'tokenizer_config.json': config }
}

/** Writes the tokenizer files into `dir`: copied from `modelDir`, or the byte tokenizer's. */
export function writeTokenizerFiles(dir: string, source: { modelDir: string } | { byte: { specialTokens: readonly string[]; maxLength: number } }): void {
  if ('modelDir' in source) {
    for (const f of TOKENIZER_FILES) {
      const from = path.join(source.modelDir, f)
      // read and written (not copyFileSync): a full disk is then reported naming the file, like every other save
      if (fs.existsSync(from)) writeFileSynced(path.join(dir, f), fs.readFileSync(from))
    }
    return
  }
  for (const [name, json] of Object.entries(byteTokenizerFiles(source.byte.specialTokens, source.byte.maxLength))) {
    writeFileSynced(path.join(dir, name), JSON.stringify(json, null, 2) + '\n')
  }
}
