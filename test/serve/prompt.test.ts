/** The server's prompt helpers: the template's answer prefix removed from a streamed answer, and the alpaca chat mapping. */
import { resolveTemplate } from '../../ts/data/resolve-template'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { chatPrompt } from '../../ts/serve/prompt'
import { finishResponse, PrefixStripper } from '../../ts/eval/generation'

describe('serve prompts', () => {
  test('PrefixStripper removes the prefix however the text is cut into pieces, and passes other text through', () => {
    for (const pieces of [['\n### ', 'x'], ['\n', '###', ' x'], ['\n### x']]) {
      const s = new PrefixStripper('\n### ')
      expect(pieces.map((p) => s.push(p)).join('')).toBe('x')
    }
    const s = new PrefixStripper('\n### ')
    expect(['\n#', '# y'].map((p) => s.push(p)).join('')).toBe('\n## y') // not the prefix: nothing lost
    expect(finishResponse('\nabc END more', [' END'], '\n')).toBe('abc')
    // a text that ends inside the prefix is held until end(): then it is the answer, as finishResponse says
    const short = new PrefixStripper('\n### ')
    expect(['\n', '#'].map((p) => short.push(p)).join('') + short.end()).toBe(finishResponse('\n#', [], '\n### '))
    expect(short.end()).toBe('')
    const whole = new PrefixStripper('\n### ')
    expect(whole.push('\n### ') + whole.end()).toBe('')
  })

  test('alpaca: one user message (system before it) is the instruction; the answer prefix is "\\n"; stops add up', () => {
    const alpaca = resolveTemplate('alpaca')
    const tok = new ByteTokenizer()
    const p = chatPrompt(alpaca, tok, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Name a colour.' }], ['STOP'])
    expect(tok.decode(p.ids)).toMatch(/### Instruction:\nBe brief\.\n\nName a colour\.\n\n### Response:$/)
    expect(p.prefix).toBe('\n')
    expect(p.stops).toEqual(['### Instruction:', '<|endoftext|>', 'STOP'])
  })
})
