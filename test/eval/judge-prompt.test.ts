/**
 * The LLM judge's prompt and reply parser (ts/eval/judge-prompt.ts): the score read from many
 * reply shapes, and the replies that must stay unparsed (null) rather than be guessed at.
 */
import { createHash } from 'node:crypto'
import { JUDGE_PROMPT, JUDGE_PROMPT_HASH, parseScore, renderJudgePrompt } from '../../ts/eval/judge-prompt'

describe('parseScore: replies with a score', () => {
  test.each<[string, number]>([
    ['Score: 85', 85],
    ['score: 85', 85],
    ['SCORE:85', 85],
    ['Score: 0', 0],
    ['Score: 100', 100],
    ['Score: 85\n', 85],
    ['  Score:   85  ', 85],
    ['Score:\n85', 85],
    ['Score = 85', 85],
    ['Score: 85.', 85],
    ['Score: 85/100', 85],
    ['Score: 85 / 100', 85],
    ['Score: 85 out of 100', 85],
    ['Score: 85%', 85],
    ['**Score:** 85', 85],
    ['**Score: 85**', 85],
    ['Score: **85**', 85],
    ['__Score__: 85', 85],
    ['`Score: 85`', 85],
    ['Score: [85]', 85],
    ['Score: [[85]]', 85],
    ['Score (0-100): 85', 85],
    ['Final score: 85', 85],
    ['{"score": 85}', 85],
    ['{"score": 85, "reason": "close to the reference"}', 85],
    ['The answer names the right colour but adds an unrelated claim.\nScore: 70', 70],
    ['Score: 70\nThe answer names the right colour but adds 2 unrelated claims.', 70],
    ['The answer is correct. Score: 95. It matches the reference.', 95],
    ['Score: 90\n\nScore: 90', 90], // repeated, agreeing
    ['Score: 72.5', 72.5], // a decimal is kept as it is
    ['<think>The reference says 42; Score: 10 would be too harsh.</think>\nScore: 80', 80],
    ['<THINK>maybe 30</THINK> 65', 65],
    ['85', 85],
    [' 85 \n', 85],
    ['85.', 85],
    ['**85**', 85],
    ['"85"', 85],
    ['85/100', 85],
    ['85 out of 100', 85],
    ['85%', 85],
    ['0', 0],
    ['100', 100],
  ])('%j → %d', (reply, score) => {
    expect(parseScore(reply)).toBe(score)
  })
})

describe('parseScore: replies without a score are null (counted as unparsed), never guessed', () => {
  test.each<string>([
    '',
    '   ',
    'The answer is correct.',
    'I would give it 85.', // a number inside a sentence may be the graded answer itself
    'The model answered 42, which matches the reference.',
    'Score: N',
    'Score: high',
    'Score:',
    'Score: 150', // out of range
    'Score: -5',
    'Score: 8/10', // another scale
    'Score: 4 out of 5',
    'Score: 80-90', // a range
    'Score: 80–90',
    'Score: 80 to 90',
    'Score: 60\nOn reflection, Score: 80', // labels that disagree
    'Score: 60, Score: 150', // one valid, one not
    '150',
    '-3',
    '8/10',
    '85 90',
    '1e2',
    'Rating: 85', // another label: the prompt asks for "Score:"
    '<think>Score: 85', // cut off while reasoning
    '<think>I think 85</think>',
    'apple END',
    'Q: red\nA: apple',
  ])('%j → null', (reply) => {
    expect(parseScore(reply)).toBeNull()
  })

  test('null, undefined and non-strings are null', () => {
    expect(parseScore(null)).toBeNull()
    expect(parseScore(undefined)).toBeNull()
    expect(parseScore(85 as unknown as string)).toBeNull()
  })
})

describe('the prompt', () => {
  test('one fixed constant, its hash the first 12 hex digits of SHA-256', () => {
    expect(JUDGE_PROMPT_HASH).toBe(createHash('sha256').update(JUDGE_PROMPT).digest('hex').slice(0, 12))
    expect(JUDGE_PROMPT_HASH).toMatch(/^[0-9a-f]{12}$/)
    for (const p of ['{instruction}', '{input}', '{reference}', '{answer}', 'Score: N']) expect(JUDGE_PROMPT).toContain(p)
  })

  test('fills the four fields in one pass; an empty input reads (none); placeholders inside the texts stay as they are', () => {
    const p = renderJudgePrompt({ instruction: 'Name the colour of {reference}.', input: '', expected: 'blue', response: 'It is {answer}' })
    expect(p).toContain('### Instruction\nName the colour of {reference}.\n')
    expect(p).toContain('### Input\n(none)\n')
    expect(p).toContain('### Reference answer\nblue\n')
    expect(p).toContain("### Model's answer\nIt is {answer}\n")
    expect(p).not.toMatch(/\{instruction\}|\{input\}/)
    const q = renderJudgePrompt({ instruction: 'Add.', input: '2 3', expected: '5', response: '5' })
    expect(q).toContain('### Input\n2 3\n')
    expect(q).toBe(JUDGE_PROMPT.replace('{instruction}', 'Add.').replace('{input}', '2 3').replace('{reference}', '5').replace('{answer}', '5'))
  })
})
