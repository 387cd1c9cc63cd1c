/**
 * A chat template (Jinja, as `tokenizer.chat_template`) for a model trained with one of
 * plwtune's own templates (alpaca, completion, chatml, phi3, a template string) whose
 * tokenizer has none — the byte-tokenizer models above all — so that llama.cpp, node-llama-cpp
 * and Ollama chat with the model in the format it was trained on.
 *
 * The template is derived from plwtune's own rendering, not rewritten by hand: one example is
 * rendered with marker strings for the user's text and the answer, and the text around them
 * becomes the literal text of the Jinja template. Each user message is rendered as a training
 * prompt and each assistant message as its completion (plus the eos token where training put
 * one); system messages are left out (the instruction templates have no place for them; chatml
 * and phi3 models that were trained with system messages lose them here). The generation
 * prompt is what `plwtune generate` gives the model: the prompt, nothing after it.
 */
import type { Template } from '../data/template'

const USER = '\u0001plwtune-user\u0001'
const ANSWER = '\u0001plwtune-answer\u0001'

/** Jinja source, or null when the template's rendering cannot be expressed this way. */
export function chatTemplateFor(template: Template): string | null {
  const source = { file: '<gguf>', index: 0 }
  const record = template.formats.includes('alpaca')
    ? { format: 'alpaca' as const, instruction: USER, input: '', output: ANSWER, source }
    : template.formats.includes('chat')
      ? { format: 'chat' as const, messages: [{ role: 'user' as const, content: USER }, { role: 'assistant' as const, content: ANSWER }], source }
      : null
  if (record === null) return null
  let rendered
  try {
    rendered = template.render(record)
  } catch {
    return null
  }
  const { segments, eos } = rendered
  let last = segments.length - 1
  while (last >= 0 && segments[last].kind !== 'completion') last--
  if (last < 0) return null
  const prompt = segments.slice(0, last).map((s) => s.text).join('')
  const completion = segments.slice(last).map((s) => s.text).join('')
  const split = (text: string, marker: string): [string, string] | null => {
    const at = text.indexOf(marker)
    if (at < 0 || text.indexOf(marker, at + 1) >= 0) return null
    return [text.slice(0, at), text.slice(at + marker.length)]
  }
  const p = split(prompt, USER)
  const c = split(completion, ANSWER)
  if (p === null || c === null) return null
  const literal = [...p, ...c]
  // Literal text of a Jinja template must not hold Jinja's own delimiters (nor the markers).
  if (literal.some((t) => /\{[{%#]|[}%#]\}|\u0001/.test(t))) return null
  // Every literal sits between `{{ '' }}` guards: chat templates are rendered with trim_blocks and
  // lstrip_blocks (as transformers does), which would drop a newline right after a block tag and
  // spaces right before one; next to an expression tag the literal text is kept as it is.
  const lit = (t: string): string => (t === '' ? '' : `{{ '' }}${t}{{ '' }}`)
  return '{%- for message in messages -%}' +
    "{%- if message['role'] == 'user' %}" + lit(p[0]) + "{{ message['content'] }}" + lit(p[1]) +
    "{% elif message['role'] == 'assistant' %}" + lit(c[0]) + "{{ message['content'] }}" + lit(c[1]) + (eos ? '{{ eos_token }}' : '') +
    '{% endif -%}' +
    '{%- endfor -%}'
}
