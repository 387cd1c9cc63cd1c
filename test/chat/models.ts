/**
 * Model directories for the chat suites (byte tokenizer, CPU, a few seconds at most):
 * - chatModelDir: a tiny GPT-2 trained on conversations in a chat_template of its own
 *   (chat_template.jinja, no plwtune.json), so that the system prompt and the history change
 *   its answers in ways it learned: "caps" as the system prompt answers in capitals, "again"
 *   repeats the previous answer, and "again" with no history answers "nothing";
 * - babblerDir: random weights that emit only printable ASCII (never the eos, whitespace or a
 *   byte of a multi-byte character), over 8192 positions: a long, visible answer to interrupt.
 */
import * as fs from 'node:fs'
import { collate, encodeDataset, recordsFromObjects } from '../../ts/data'
import { HfTokenizer } from '../../ts/data/hf-tokenizer'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { initModel } from '../../ts/model'
import { writeTokenizerFiles } from '../../ts/train/tokenizer-files'
import { FACTS, tmp } from '../commands/tiny-model'

/** System lines "S: …", questions "Q: …", answers "A: … END", one a line; the prompt ends with "A: ". */
export const CHAT_TEMPLATE = "{% for m in messages %}{% if m.role == 'system' %}S: {{ m.content }}\n" +
  "{% elif m.role == 'user' %}Q: {{ m.content }}\n{% else %}A: {{ m.content }} END\n{% endif %}{% endfor %}" +
  '{% if add_generation_prompt %}A: {% endif %}'

/** The conversations chatModelDir learns. */
export function chatRecords(): unknown[] {
  const out: unknown[] = []
  const u = (content: string) => ({ role: 'user', content })
  const a = (content: string) => ({ role: 'assistant', content })
  for (const [color, thing] of FACTS) {
    out.push({ messages: [u(color), a(thing)] })
    out.push({ messages: [{ role: 'system', content: 'caps' }, u(color), a(thing.toUpperCase())] })
    out.push({ messages: [u(color), a(thing), u('again'), a(thing)] })
  }
  out.push({ messages: [u('again'), a('nothing')] })
  return out
}

export async function chatModelDir(o: { steps?: number } = {}): Promise<string> {
  const dir = tmp('plw-chat-model-')
  writeTokenizerFiles(dir, { byte: { specialTokens: ['<|endoftext|>'], maxLength: 64 } })
  fs.writeFileSync(`${dir}/chat_template.jinja`, CHAT_TEMPLATE)
  const tok = await HfTokenizer.fromDir(dir)
  const template = resolveTemplate('chat_template', { tokenizer: tok })
  const examples = encodeDataset(recordsFromObjects(chatRecords()).records, template, tok).examples
  const model = await initModel({ nLayer: 2, nHead: 4, nEmbd: 64, nPositions: 64, vocabSize: 257 }, { seed: 1, maxBatch: examples.length, maxSeqLen: 63 })
  const batch = collate(examples, { promptLossWeight: 0.1, padId: tok.eosId })
  for (let s = 0; s < (o.steps ?? 200); s++) {
    await model.step(batch, { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
  }
  await model.save(dir)
  model.dispose()
  return dir
}

/**
 * Random weights; the rows of the (tied) embedding for the eos, control characters, space and
 * the bytes ≥ 0x7f zeroed, the others scaled up, so that the likeliest token is always a
 * printable ASCII character.
 */
export async function babblerDir(): Promise<string> {
  const dir = tmp('plw-babbler-')
  const C = 64
  const model = await initModel({ nLayer: 1, nHead: 2, nEmbd: C, nPositions: 8192, vocabSize: 257 }, { seed: 2, maxBatch: 1, maxSeqLen: 16 })
  const silent = (id: number) => id <= 32 || id >= 127
  const w = model.read('wte.weight')
  for (let i = 0; i < w.length; i++) w[i] = silent(Math.floor(i / C)) ? 0 : w[i] * 10
  model.write('wte.weight', w)
  await model.save(dir)
  model.dispose()
  writeTokenizerFiles(dir, { byte: { specialTokens: ['<|endoftext|>'], maxLength: 8192 } })
  return dir
}
