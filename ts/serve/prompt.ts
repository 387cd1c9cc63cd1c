/**
 * Requests → prompt token ids, as training encoded them:
 *
 * - /v1/completions: the prompt text as it is (no template), with the tokenizer's special prefix
 *   (its BOS) in front, as training puts it before every example; an empty prompt is the eos
 *   (GPT-2's beginning of text).
 * - /v1/chat/completions: the messages rendered with the served template (the model's chat
 *   template, or the training template plwtune.json records) up to the assistant's answer. An
 *   instruction template (alpaca, completion, a template string) renders one instruction, so a
 *   chat request to it is one user message, system messages going before it, separated by a
 *   blank line; a conversation with earlier turns needs a chat template (400 otherwise).
 *
 * The chat answer ends where `plwtune chat`'s does (answerEnds, ts/eval/generation.ts: the
 * template's stops and closing text, the tokenizer's end-of-turn tokens) or at the request's own
 * stops, and what the template writes before every answer (alpaca's "\n") is removed from its
 * start.
 */
import { encodeTexts } from '../data/encode'
import { TemplateError } from '../data/errors'
import { DataRecord } from '../data/records'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
import { answerEnds, promptIds } from '../eval/generation'
import { ApiError, ChatRequest } from './openai-shapes'

export interface PromptPlan {
  ids: number[]
  /** Strings that end the answer (never part of it). */
  stops: string[]
  /** Token ids that end the answer: the eos, and the stops that are one special token. */
  stopIds: number[]
  /** Removed from the start of the answer when it starts with it. */
  prefix: string
}

export function completionPrompt(tokenizer: Tokenizer, prompt: string, stop: readonly string[]): PromptPlan {
  const { prefix, parts } = encodeTexts(tokenizer, [prompt])
  const ids = [...prefix, ...parts.flat()]
  return { ids: ids.length > 0 ? ids : [tokenizer.eosId], stops: [...stop], stopIds: [tokenizer.eosId], prefix: '' }
}

const SOURCE = { file: 'request', index: 0 }

/** The chat request as a record of the template's formats, with an empty answer. */
function chatRecord(template: Template, messages: ChatRequest['messages'], answer: string): DataRecord {
  if (template.formats.includes('chat')) return { format: 'chat', messages: [...messages, { role: 'assistant', content: answer }], source: SOURCE }
  const users = messages.filter((m) => m.role === 'user')
  if (users.length !== 1 || messages.some((m) => m.role === 'assistant')) {
    throw new ApiError(400, `messages: the served template (${template.name}) renders one instruction, not a conversation: send one user ` +
      'message (system messages go before it), or serve a model with a chat template (--template chatml or chat_template)', 'invalid_request_error',
    'messages', 'conversation_not_supported')
  }
  const system = messages.filter((m) => m.role === 'system').map((m) => m.content)
  const instruction = [...system, users[0].content].join('\n\n')
  return { format: 'alpaca', instruction, input: '', output: answer, source: SOURCE }
}

export function chatPrompt(template: Template, tokenizer: Tokenizer, messages: ChatRequest['messages'], stop: readonly string[]): PromptPlan {
  try {
    const record = chatRecord(template, messages, '')
    const { ids } = promptIds(template, tokenizer, record)
    const ends = answerEnds(template, tokenizer, record)
    return { ids: ids.length > 0 ? ids : [tokenizer.eosId], stops: [...new Set([...ends.stops, ...stop])], stopIds: ends.stopIds,
      prefix: ends.prefix }
  } catch (err) {
    if (err instanceof TemplateError) {
      throw new ApiError(400, `messages: the served template (${template.name}) cannot render them: ${err.message}`, 'invalid_request_error', 'messages')
    }
    throw err
  }
}

