/**
 * `--template NAME|STRING` → a Template: a built-in name, `chat_template` for the model's own,
 * or a template string with {instruction}, {input} and {output}. Without a choice, the data's
 * format picks: alpaca → alpaca, prompt-completion → completion, chat → the model's
 * chat_template when its tokenizer has one, else chatml.
 */
import { jinjaChatTemplate } from './chat-template'
import { TemplateError } from './errors'
import { DataFormat } from './records'
import { Template } from './template'
import { alpacaTemplate, chatmlTemplate, completionTemplate, customTemplate, phi3Template } from './templates'
import { Tokenizer } from './tokenizer'

export const TEMPLATE_NAMES = ['alpaca', 'phi3', 'chatml', 'completion', 'chat_template'] as const
export type TemplateName = typeof TEMPLATE_NAMES[number]

export interface ResolveTemplateOptions {
  /** The data's format, for the default choice. */
  format?: DataFormat
  /** The model's tokenizer: an HfTokenizer brings its chat_template, template variables and special tokens. */
  tokenizer?: Tokenizer
  /** The time a chat_template's strftime_now renders (see ChatTemplateOptions.now). */
  now?: Date
}

interface ChatTemplateSource {
  chatTemplate: string | null
  chatTemplateFile: string | null
  templateVariables: Record<string, string>
}

function modelChatTemplate(tokenizer: Tokenizer | undefined): ChatTemplateSource | null {
  const t = tokenizer as Partial<ChatTemplateSource> | undefined
  return t !== undefined && typeof t.chatTemplate === 'string'
    ? { chatTemplate: t.chatTemplate, chatTemplateFile: t.chatTemplateFile ?? null, templateVariables: t.templateVariables ?? {} }
    : null
}

export function resolveTemplate(spec: string | undefined, options: ResolveTemplateOptions = {}): Template {
  const model = modelChatTemplate(options.tokenizer)
  const fromModel = (m: ChatTemplateSource): Template => jinjaChatTemplate(m.chatTemplate as string, {
    variables: m.templateVariables, specialTokens: options.tokenizer?.specialTokens, sourceFile: m.chatTemplateFile ?? undefined,
    now: options.now,
  })
  if (spec === undefined || spec === 'auto') {
    switch (options.format) {
      case 'prompt-completion': return completionTemplate()
      case 'chat': return model !== null ? fromModel(model) : chatmlTemplate()
      default: return alpacaTemplate()
    }
  }
  switch (spec) {
    case 'alpaca': return alpacaTemplate()
    case 'phi3': return phi3Template()
    case 'chatml': return chatmlTemplate()
    case 'completion': return completionTemplate()
    case 'chat_template':
      if (model === null) {
        throw new TemplateError('template chat_template: the model has no chat_template (tokenizer_config.json or ' +
          'chat_template.jinja in its directory); choose alpaca, phi3, chatml, completion or a template string')
      }
      return fromModel(model)
  }
  if (spec.includes('{output}')) return customTemplate(spec)
  throw new TemplateError(`unknown template ${JSON.stringify(spec)}: expected one of ${TEMPLATE_NAMES.join(', ')}, ` +
    'or a template string with {instruction}, {input} and {output}')
}
