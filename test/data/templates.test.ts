/**
 * Templates: golden strings for each, the prompt/completion split of their segments, the
 * Jinja chat_template boundaries, and template resolution.
 */
import {
  alpacaTemplate, chatmlTemplate, completionTemplate, customTemplate, phi3Template, jinjaChatTemplate, resolveTemplate,
  generationPrompt, renderText, recordsFromObjects, DataRecord, Rendered, TemplateError, ALPACA_PROMPT_INPUT,
  ALPACA_PROMPT_NO_INPUT, chatTemplateSource, specialTokenVariables, Template,
} from '../../ts/data'

const rec = (o: unknown): DataRecord => recordsFromObjects([o]).records[0]
const alpacaIn = rec({ instruction: 'Add the numbers.', input: '2 3', output: '5' })
const alpacaNoIn = rec({ instruction: 'Name a prime.', input: '', output: '7' })
const pc = rec({ prompt: 'Capital of France?', completion: 'Paris' })
const chat = rec({ messages: [
  { role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!', weight: 0 },
  { role: 'user', content: '2+2?' }, { role: 'assistant', content: '4' },
] })

/** [kind, text] pairs, with the weight when a segment has one. */
function parts(r: Rendered): Array<[string, string] | [string, string, number]> {
  return r.segments.map((s) => (s.weight !== undefined ? [s.kind, s.text, s.weight] : [s.kind, s.text]))
}

describe('alpaca', () => {
  test('the two prompt strings are Stanford Alpaca\'s, byte for byte', () => {
    expect(ALPACA_PROMPT_INPUT).toBe('Below is an instruction that describes a task, paired with an input that provides ' +
      'further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n' +
      '### Input:\n{input}\n\n### Response:')
    expect(ALPACA_PROMPT_NO_INPUT).toBe('Below is an instruction that describes a task. Write a response that appropriately ' +
      'completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:')
  })

  test('with input', () => {
    const r = alpacaTemplate().render(alpacaIn)
    expect(parts(r)).toEqual([
      ['prompt', 'Below is an instruction that describes a task, paired with an input that provides further context. ' +
        'Write a response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n2 3\n\n### Response:'],
      ['completion', '\n5'],
    ])
    expect(r.eos).toBe(true)
  })

  test('without input (missing, null or empty)', () => {
    const golden = 'Below is an instruction that describes a task. Write a response that appropriately completes the request.' +
      '\n\n### Instruction:\nName a prime.\n\n### Response:\n7'
    expect(renderText(alpacaTemplate(), alpacaNoIn)).toBe(golden)
    expect(renderText(alpacaTemplate(), rec({ instruction: 'Name a prime.', output: '7' }))).toBe(golden)
    expect(renderText(alpacaTemplate(), rec({ instruction: 'Name a prime.', input: null, output: '7' }))).toBe(golden)
  })

  test('Stanford\'s exact concatenation with responsePrefix ""; braces in data are not placeholders', () => {
    expect(alpacaTemplate({ responsePrefix: '' }).render(alpacaNoIn).segments[1].text).toBe('7')
    const r = rec({ instruction: 'Echo {input}', input: '{instruction}', output: '{output}' })
    expect(renderText(alpacaTemplate(), r)).toContain('### Instruction:\nEcho {input}\n\n### Input:\n{instruction}\n\n### Response:\n{output}')
  })

  test('prompt/completion records map to instruction/output; chat records are refused', () => {
    expect(renderText(alpacaTemplate(), pc)).toContain('### Instruction:\nCapital of France?\n\n### Response:\nParis')
    expect(() => alpacaTemplate().render(chat)).toThrow(TemplateError)
  })

  test('generation prompt is everything before the completion', () => {
    expect(generationPrompt(alpacaTemplate(), alpacaNoIn)).toMatch(/### Instruction:\nName a prime\.\n\n### Response:$/)
  })
})

describe('completion (OpenAI legacy conventions)', () => {
  test('defaults: separator "\\n\\n###\\n\\n", leading space, stop " END", eos', () => {
    const r = completionTemplate().render(pc)
    expect(parts(r)).toEqual([['prompt', 'Capital of France?\n\n###\n\n'], ['completion', ' Paris END']])
    expect(r.eos).toBe(true)
  })

  test('no second space when the completion starts with whitespace; options', () => {
    expect(completionTemplate().render(rec({ prompt: 'p', completion: '\nx' })).segments[1].text).toBe('\nx END')
    const t = completionTemplate({ separator: ' ->', stop: '\n', leadingSpace: false, eos: false })
    expect(parts(t.render(pc))).toEqual([['prompt', 'Capital of France? ->'], ['completion', 'Paris\n']])
    expect(t.render(pc).eos).toBe(false)
  })

  test('alpaca records: instruction + blank line + input as the prompt', () => {
    expect(renderText(completionTemplate(), alpacaIn)).toBe('Add the numbers.\n\n2 3\n\n###\n\n 5 END')
  })
})

describe('custom template string', () => {
  test('prompt before {output}, completion from it', () => {
    const t = customTemplate('Q: {instruction}\n{input}\nA:{output}\n###')
    expect(parts(t.render(alpacaIn))).toEqual([['prompt', 'Q: Add the numbers.\n2 3\nA:'], ['completion', '5\n###']])
    expect(t.stop).toEqual(['\n###'])
    expect(t.markers.map((m) => [m.what, m.text])).toEqual([['response separator', '\nA:'], ['stop sequence', '\n###']])
    expect(renderText(customTemplate('{{{instruction}}} => {output}'), alpacaNoIn)).toBe('{Name a prime.} => 7')
  })

  test('bad template strings are rejected with a reason', () => {
    expect(() => customTemplate('{instruction}')).toThrow('{output} is missing')
    expect(() => customTemplate('{instruction} {output} {input}')).toThrow('{output} must appear once, after every other placeholder')
    expect(() => customTemplate('{question} {output}')).toThrow('unknown placeholder {question} at character 0')
    expect(() => customTemplate('{output}')).toThrow('{instruction} is missing')
    expect(() => customTemplate('{instruction} } {output}')).toThrow('unmatched "}" at character 14')
  })
})

describe('chat formats', () => {
  test('phi3 golden', () => {
    const r = phi3Template().render(chat)
    expect(parts(r)).toEqual([
      ['prompt', '<|system|>\nBe brief.<|end|>\n'],
      ['prompt', '<|user|>\nHi<|end|>\n'],
      ['prompt', '<|assistant|>\n'],
      ['completion', 'Hello!<|end|>\n', 0],
      ['prompt', '<|user|>\n2+2?<|end|>\n'],
      ['prompt', '<|assistant|>\n'],
      ['completion', '4<|end|>\n'],
    ])
    expect(r.eos).toBe(true)
    expect(generationPrompt(phi3Template(), chat)).toBe('<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n' +
      'Hello!<|end|>\n<|user|>\n2+2?<|end|>\n<|assistant|>\n')
  })

  test('chatml golden; alpaca records become one user turn', () => {
    expect(renderText(chatmlTemplate(), chat)).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n' +
      '<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n')
    expect(parts(chatmlTemplate().render(alpacaIn))).toEqual([
      ['prompt', '<|im_start|>user\nAdd the numbers.\n\n2 3<|im_end|>\n'],
      ['prompt', '<|im_start|>assistant\n'],
      ['completion', '5<|im_end|>\n'],
    ])
    expect(chatmlTemplate().stop).toEqual(['<|im_end|>'])
  })
})

// The templates below are the shapes real models ship (abridged), written here so that nothing is downloaded.
const CHATML_JINJA = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
const PHI3_JINJA = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}" +
  "{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}" +
  "{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}" +
  '{% else %}{{ eos_token }}{% endif %}'
const LLAMA3_JINJA = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + " +
  "message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
const ALTERNATING_JINJA = "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{{ '[' + message['role'] + '] ' + message['content'] + '\\n' }}{% endfor %}"

describe('a model\'s Jinja chat_template', () => {
  test('chatml: the same segments as the built-in chatml', () => {
    const ours = chatmlTemplate().render(chat).segments
    const theirs = jinjaChatTemplate(CHATML_JINJA).render(chat)
    expect(theirs.eos).toBe(false)
    // The built-in keeps each prompt message apart; the Jinja one merges adjacent prompt text. Same text per kind.
    const byKind = (segs: Rendered['segments']): string[] => segs.reduce<string[]>((acc, s, i) => {
      if (i > 0 && segs[i - 1].kind === s.kind && segs[i - 1].weight === s.weight) acc[acc.length - 1] += s.text
      else acc.push(s.text)
      return acc
    }, [])
    expect(byKind(theirs.segments)).toEqual(byKind(ours))
    expect(parts(theirs)).toEqual([
      ['prompt', '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'],
      ['completion', 'Hello!<|im_end|>\n', 0],
      ['prompt', '<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n'],
      ['completion', '4<|im_end|>\n'],
    ])
  })

  test('phi3 with bos and a closing eos_token: boundaries never cut a special token; the eos is completion', () => {
    const specials = ['<s>', '<|endoftext|>', '<|system|>', '<|user|>', '<|assistant|>', '<|end|>']
    const t = jinjaChatTemplate(PHI3_JINJA, { variables: { bos_token: '<s>', eos_token: '<|endoftext|>' }, specialTokens: specials })
    expect(parts(t.render(chat))).toEqual([
      ['prompt', '<s><|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n'],
      ['completion', 'Hello!<|end|>\n', 0],
      ['prompt', '<|user|>\n2+2?<|end|>\n<|assistant|>\n'],
      ['completion', '4<|end|>\n<|endoftext|>'],
    ])
    expect(t.markers.map((m) => m.text)).toEqual(specials)
  })

  test('llama-3 style (content trimmed, no newline after the end marker)', () => {
    const t = jinjaChatTemplate(LLAMA3_JINJA, { variables: { bos_token: '<|begin_of_text|>' } })
    const r = rec({ messages: [{ role: 'user', content: ' Hi ' }, { role: 'assistant', content: 'Hello ' }] })
    expect(parts(t.render(r))).toEqual([
      ['prompt', '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'],
      ['completion', 'Hello<|eot_id|>'],
    ])
  })

  test('a template that raises on a conversation names the record', () => {
    const t = jinjaChatTemplate(ALTERNATING_JINJA)
    expect(parts(t.render(rec({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] }))))
      .toEqual([['prompt', '[user] a\n[assistant] '], ['completion', 'b\n']])
    // Content that also occurs inside the header ("a" in "[assistant]") is still placed right.
    expect(parts(t.render(rec({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'a' }] }))))
      .toEqual([['prompt', '[user] a\n[assistant] '], ['completion', 'a\n']])
    expect(() => t.render(rec({ messages: [{ role: 'assistant', content: 'b' }] })))
      .toThrow('<data>[0]: the chat_template failed on this conversation: Conversation roles must alternate')
  })

  test('a template that does not parse', () => {
    expect(() => jinjaChatTemplate('{% for m in messages %}')).toThrow(/chat_template: cannot parse it/)
  })

  test('tokenizer_config.json: chat_template as a string or a named list; special tokens as strings or objects', () => {
    expect(chatTemplateSource({ chat_template: 'x' })).toBe('x')
    expect(chatTemplateSource({ chat_template: [{ name: 'tool_use', template: 'a' }, { name: 'default', template: 'b' }] })).toBe('b')
    expect(chatTemplateSource({})).toBeNull()
    expect(specialTokenVariables({ bos_token: '<s>', eos_token: { content: '</s>', lstrip: false }, pad_token: null }))
      .toEqual({ bos_token: '<s>', eos_token: '</s>' })
  })
})

describe('resolveTemplate', () => {
  const fakeModel = { encode: () => [], decode: () => '', eosId: 0, vocabSize: 1, chatTemplate: CHATML_JINJA, templateVariables: {} }
  const name = (t: Template): string => t.name

  test('names, strings and defaults by format', () => {
    expect(['alpaca', 'phi3', 'chatml', 'completion'].map((n) => name(resolveTemplate(n)))).toEqual(['alpaca', 'phi3', 'chatml', 'completion'])
    expect(name(resolveTemplate('Q: {instruction} A: {output}'))).toBe('custom')
    expect(name(resolveTemplate(undefined, { format: 'alpaca' }))).toBe('alpaca')
    expect(name(resolveTemplate('auto', { format: 'prompt-completion' }))).toBe('completion')
    expect(name(resolveTemplate(undefined, { format: 'chat' }))).toBe('chatml')
    expect(name(resolveTemplate(undefined, { format: 'chat', tokenizer: fakeModel }))).toBe('chat_template')
    expect(name(resolveTemplate('chat_template', { tokenizer: fakeModel }))).toBe('chat_template')
  })

  test('unknown names and a missing chat_template are errors', () => {
    expect(() => resolveTemplate('vicuna')).toThrow('unknown template "vicuna": expected one of alpaca, phi3, chatml, completion, chat_template')
    expect(() => resolveTemplate('chat_template')).toThrow('the model has no chat_template')
  })
})
