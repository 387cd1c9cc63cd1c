/**
 * Renders a Jinja template from a model directory with budgets: a template is code written by
 * whoever published the model, and @huggingface/jinja runs it with no limits — `range(1e9)`
 * kills the process outright (V8 aborts on an array that large; neither try/catch nor a worker
 * thread survives it), a long output loop does the same, and nested loops hang.
 *
 * The interpreter is the library's, with one method wrapped: every node it evaluates is one
 * step, and so is every item of a list it produces (a `for` walks its list without evaluating
 * anything for an empty body, so nested loops must be paid for by their lists), counted against
 * `maxSteps`; the clock is read every 256 nodes against `maxMillis`.
 * Every value a step produces is measured: a string longer than `maxChars`, a list longer than
 * `maxItems`, or more than `maxTotal` characters and items produced in all, stops the render.
 * `range` is replaced by one that refuses more than `maxItems` numbers before allocating them.
 * Each limit is far above what a real chat template needs (they take a few hundred steps per
 * message) and far below what would exhaust memory: one step can at most double a value
 * (`a + a`), so no allocation exceeds 2 × the per-value limits before it is caught.
 * A JavaScript stack overflow (a macro that recurses without end) is caught as well.
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja'
import { TemplateError } from './errors'

export interface RenderBudget {
  /** Nodes evaluated in one render. */
  maxSteps: number
  /** Wall-clock time of one render. */
  maxMillis: number
  /** Length of any one string value (UTF-16 units). */
  maxChars: number
  /** Length of any one list (and of a `range`). */
  maxItems: number
  /** Characters and list items produced in one render, all values together. */
  maxTotal: number
}

export const DEFAULT_RENDER_BUDGET: Readonly<RenderBudget> = Object.freeze({
  maxSteps: 1_000_000,
  maxMillis: 10_000,
  maxChars: 1 << 24,
  maxItems: 1 << 22,
  maxTotal: 1 << 28,
})

/** A render stopped by a budget: the template, not the data, is at fault. */
export class TemplateBudgetError extends TemplateError {}

type EvaluateArgs = Parameters<Interpreter['evaluate']>
type RuntimeValue = ReturnType<Interpreter['evaluate']>

class BudgetedInterpreter extends Interpreter {
  private steps = 0
  private nodes = 0
  private total = 0
  private readonly deadline: number

  constructor(env: Environment, private readonly budget: RenderBudget, private readonly where: string) {
    super(env)
    this.deadline = Date.now() + budget.maxMillis
  }

  override evaluate(statement: EvaluateArgs[0], environment: EvaluateArgs[1]): RuntimeValue {
    const b = this.budget
    if (++this.steps > b.maxSteps) this.stop(`more than ${b.maxSteps.toLocaleString('en-US')} steps (a loop or recursion too long)`)
    if ((++this.nodes & 255) === 0 && Date.now() > this.deadline) this.stop(`more than ${b.maxMillis} ms`)
    const value = super.evaluate(statement, environment)
    const v: unknown = value.value
    if (typeof v === 'string' || Array.isArray(v)) {
      const n = v.length
      if (typeof v === 'string' ? n > b.maxChars : n > b.maxItems) {
        this.stop(typeof v === 'string' ? `a string of ${n.toLocaleString('en-US')} characters (limit ${b.maxChars.toLocaleString('en-US')})`
          : `a list of ${n.toLocaleString('en-US')} items (limit ${b.maxItems.toLocaleString('en-US')})`)
      }
      this.total += n
      if (typeof v !== 'string') this.steps += n
      if (this.total > b.maxTotal) this.stop(`more than ${b.maxTotal.toLocaleString('en-US')} characters and list items in all`)
    }
    return value
  }

  private stop(what: string): never {
    throw new TemplateBudgetError(`${this.where}: rendering stopped: ${what}. The template comes from the model ` +
      'directory and is run with limits; a real chat template stays far below them')
  }
}

/** A template compiled once and rendered with a budget; errors name `where` (the template's file). */
export class BudgetedTemplate {
  private readonly parsed: Template['parsed']
  readonly budget: RenderBudget

  /** `now`: the time `strftime_now` renders (default: the moment of each render). */
  constructor(source: string, readonly where: string, budget: Partial<RenderBudget> = {}, private readonly now?: Date) {
    try {
      this.parsed = new Template(source).parsed
    } catch (err) {
      throw new TemplateError(`${where}: cannot parse it: ${(err as Error).message}`)
    }
    this.budget = { ...DEFAULT_RENDER_BUDGET, ...budget }
  }

  /**
   * The template's text for `items`. A budget stop is a TemplateBudgetError naming the template;
   * anything else the template does wrong (an undefined call, raise_exception, a type error) is
   * the library's Error, which the caller puts in context.
   */
  render(items: Record<string, unknown>): string {
    const env = new Environment()
    for (const [name, value] of Object.entries(this.globals())) env.set(name, value)
    for (const [name, value] of Object.entries(items)) env.set(name, value)
    const interpreter = new BudgetedInterpreter(env, this.budget, this.where)
    try {
      const out = interpreter.run(this.parsed).value
      return typeof out === 'string' ? out : String(out)
    } catch (err) {
      if (err instanceof RangeError) {
        const why = /call stack/i.test(err.message) ? 'recursion too deep (a macro calling itself without end?)' : err.message
        throw new TemplateBudgetError(`${this.where}: rendering stopped: ${why}`)
      }
      throw err
    }
  }

  /** The globals the library's own render defines, with a `range` that checks its size first. */
  private globals(): Record<string, unknown> {
    const maxItems = this.budget.maxItems
    const where = this.where
    return {
      true: true, false: false, none: null, True: true, False: false, None: null,
      raise_exception: (message: unknown): never => { throw new Error(String(message)) },
      range: (start: number, stop?: number, step = 1): number[] => {
        if (stop === undefined) { stop = start; start = 0 }
        if (![start, stop, step].every(Number.isFinite)) throw new Error('range() needs finite numbers')
        if (step === 0) throw new Error('range() step must not be zero')
        const count = Math.max(0, Math.ceil((stop - start) / step))
        if (count > maxItems) {
          throw new TemplateBudgetError(`${where}: rendering stopped: range() of ${count.toLocaleString('en-US')} numbers ` +
            `(limit ${maxItems.toLocaleString('en-US')})`)
        }
        return Array.from({ length: count }, (_, i) => start + i * step)
      },
      strftime_now: (format: unknown): string => strftime(this.now ?? new Date(), String(format)),
    }
  }
}

/**
 * Python's strftime for the directives chat templates use (Llama 3.x writes the date with
 * `strftime_now("%d %b %Y")`), in English whatever the machine's locale, as Python's C locale.
 */
export function strftime(date: Date, format: string): string {
  const month = (style: 'long' | 'short'): string => date.toLocaleString('en-US', { month: style })
  const weekday = (style: 'long' | 'short'): string => date.toLocaleString('en-US', { weekday: style })
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0')
  return format.replace(/%[YymdbBaAHMSjp%]/g, (d) => {
    switch (d) {
      case '%Y': return String(date.getFullYear())
      case '%y': return pad(date.getFullYear() % 100)
      case '%m': return pad(date.getMonth() + 1)
      case '%d': return pad(date.getDate())
      case '%b': return month('short')
      case '%B': return month('long')
      case '%a': return weekday('short')
      case '%A': return weekday('long')
      case '%H': return pad(date.getHours())
      case '%M': return pad(date.getMinutes())
      case '%S': return pad(date.getSeconds())
      case '%p': return date.getHours() < 12 ? 'AM' : 'PM'
      case '%j': { // day of the year, counted on the calendar date (no daylight-saving hour in the way)
        const y = date.getFullYear()
        return pad((Date.UTC(y, date.getMonth(), date.getDate()) - Date.UTC(y, 0, 1)) / 86_400_000 + 1, 3)
      }
      default: return '%'
    }
  })
}
