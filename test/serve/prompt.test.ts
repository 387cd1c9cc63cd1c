/** The server's prompt helpers: the template's answer prefix removed from a streamed answer, the alpaca chat mapping, and the same answer ends as the chat's. */
import { resolveTemplate } from '../../ts/data/resolve-template'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { chatPrompt } from '../../ts/serve/prompt'
import { ChatSession } from '../../ts/chat/session'
import { QA_TEMPLATE } from '../commands/tiny-model'
import { CHAT_TEMPLATE } from '../chat/models'
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

  test('an answer ends where plwtune chat ends it: same stops, stop ids and prefix for every kind of template', () => {
    const chatml = new ByteTokenizer({ specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] })
    const jinja = Object.assign(new ByteTokenizer({ specialTokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] }),
      { chatTemplate: CHAT_TEMPLATE, chatTemplateFile: null, templateVariables: {} })
    const cases = [
      { template: resolveTemplate('alpaca'), tok: new ByteTokenizer() },
      { template: resolveTemplate(QA_TEMPLATE), tok: chatml }, // a template string closing answers with " END"
      { template: resolveTemplate('chatml'), tok: chatml },
      { template: resolveTemplate('chat_template', { tokenizer: jinja }), tok: jinja },
    ]
    for (const { template, tok } of cases) {
      const chat = new ChatSession({ template, tokenizer: tok, contextLength: 64 })
      const served = chatPrompt(template, tok, [{ role: 'user', content: 'Hi' }], [])
      expect({ template: template.name, stops: served.stops, ids: served.stopIds, prefix: served.prefix })
        .toEqual({ template: template.name, stops: chat.stopStrings, ids: chat.stopIds, prefix: chat.answerPrefix })
    }
    // ChatML's end of turn is one special token: a stop id, not only a string
    expect(chatml.encode('<|im_end|>')).toHaveLength(1)
    expect(chatPrompt(resolveTemplate('chatml'), chatml, [{ role: 'user', content: 'Hi' }], []).stopIds)
      .toEqual([chatml.eosId, chatml.encode('<|im_end|>')[0]])
  })
})
