/**
 * The study end to end in CI: `plwtune sweep` on two demo datasets (two family subsets) with two
 * small multiple-choice benchmarks made here from the demo's task families, a tiny base model,
 * 3 λ × 2 seeds — every file and plot written, each run scored and compared with the base, the
 * analysis run over both datasets; `plwtune sweep analyze OUT` reads the same; a second
 * invocation skips every run.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Writable } from 'node:stream'
import { sweepCommand } from '../../ts/commands/sweep'
import { sweepAnalyzeCommand } from '../../ts/commands/sweep-analyze'
import { DEMO_TEMPLATE, DEMO_WORDS, generateDemoRecords } from '../../ts/demo/tasks'
import { parseSweepArgs, RunResult } from '../../ts/sweep/spec'
import { tinyModelDir, tmp, writeJsonl } from '../commands/tiny-model'

function sink(): { stream: Writable; text: () => string } {
  let text = ''
  const stream = new Writable({ write(chunk, _enc, cb) { text += String(chunk); cb() } })
  return { stream, text: () => text }
}

/** 4 candidate answers: the right one at a seeded place among three near misses. */
function arithmetic(n: number): unknown[] {
  const out: unknown[] = []
  for (let i = 0; i < n; i++) {
    const a = 10 + ((i * 37) % 80), b = 3 + ((i * 53) % 40)
    const right = a + b
    const choices = [right + 1, right - 10, right + 10]
    const answer = i % 4
    choices.splice(answer, 0, right)
    out.push({ context: `${a}+${b}=`, choices: choices.map(String), answer })
  }
  return out
}

/** The demo's reverse family as a choice between the reversed word and three other orders. */
function reversal(n: number): unknown[] {
  return DEMO_WORDS.slice(0, n).map((w, i) => {
    const right = [...w].reverse().join('')
    const choices = [w, w.slice(1) + w[0], right.slice(1) + right[0]]
    const answer = i % 4
    choices.splice(answer, 0, right)
    return { context: `rev ${w}:`, choices: choices.map((c) => ` ${c}`), answer }
  })
}

describe('plwtune sweep: the study end to end (two datasets, two benchmarks, a base model)', () => {
  test('every file and plot is written, the runs carry scores and their change against the base, the analysis runs', async () => {
    const dir = tmp('plw-study-')
    const model = await tinyModelDir()
    const arith = writeJsonl(path.join(dir, 'arith.jsonl'), generateDemoRecords(60, 5, { families: ['add', 'subtract', 'max', 'min'] }))
    const words = writeJsonl(path.join(dir, 'words.jsonl'), generateDemoRecords(60, 5, { families: ['reverse', 'uppercase', 'length'] }))
    const mcArith = writeJsonl(path.join(dir, 'mc-arith.jsonl'), arithmetic(40))
    const mcWords = writeJsonl(path.join(dir, 'mc-words.jsonl'), reversal(40))
    const out = path.join(dir, 'sweep')
    const args = ['--model', model, '--data', arith, '--data', words, '--lambdas', '0,0.5,1', '--seeds', '1,2', '--out', out,
      '--benchmarks', `arith=${mcArith},reverse=${mcWords}`, '--shots', 'arith=2', '--device', 'cpu', '--template', DEMO_TEMPLATE,
      '--max-steps', '10', '--lr', '0.01', '--batch-size', '8', '--max-length', '64', '--eval-every', '2', '--val-split', '0.1', '--test-split', '0.2',
      '--generate-eval', '4', '--max-new-tokens', '8']
    const io = { out: sink(), err: sink() }
    const finished: string[] = []
    const code = await sweepCommand(args, { out: io.out.stream, err: io.err.stream },
      { onEvent: (e) => { if (e.type === 'finish') finished.push(`${e.dataset} ${e.lambda} ${e.seed}`) } })
    expect({ code, err: io.err.text() }).toEqual({ code: 0, err: '' })
    expect(finished).toEqual(['arith', 'words'].flatMap((d) => ['0 1', '0 2', '0.5 1', '0.5 2', '1 1', '1 2'].map((x) => `${d} ${x}`)))
    const text = io.out.text()
    expect(text).toMatch(/sweep: scoring the base model/)
    expect(text).toMatch(/dataset arith: 60 records, completion\/prompt ratio [\d.]+: short-completion/)
    expect(text).toMatch(/dataset words: 60 records/)
    expect(text).toMatch(/the study's analysis \(Holm–Bonferroni over 8 p-values at α = 0\.05\):\n {2}arith: .*\n {2}words: /)

    // The files: the study's at the top, each dataset's sweep in its own directory, each run scored.
    for (const f of ['sweep.json', 'results.md', 'scores.csv', 'analysis.json', 'base.json']) {
      expect({ f, exists: fs.existsSync(path.join(out, f)) }).toEqual({ f, exists: true })
    }
    const base = JSON.parse(fs.readFileSync(path.join(out, 'base.json'), 'utf8'))
    expect(Object.keys(base.benchmarks).sort()).toEqual(['arith', 'reverse'])
    expect(base.benchmarks.arith).toMatchObject({ shots: 2, n: 40 })
    expect(base.benchmarks.reverse).toMatchObject({ shots: 0, n: 40 })
    for (const d of ['arith', 'words']) {
      for (const f of ['sweep.json', 'results.md', 'results.csv', 'sweep.svg', 'bench-arith.svg', 'bench-reverse.svg', 'bench-exact_match.svg', 'aggregate.svg']) {
        expect({ d, f, exists: fs.existsSync(path.join(out, d, f)) }).toEqual({ d, f, exists: true })
      }
      for (const l of ['0', '0.5', '1']) {
        for (const s of [1, 2]) {
          const r = JSON.parse(fs.readFileSync(path.join(out, d, `lambda-${l}`, `seed-${s}`, 'result.json'), 'utf8')) as RunResult
          expect(r).toMatchObject({ lambda: Number(l), seed: s, stop_reason: 'completed', val_completion_loss: expect.any(Number),
            test_exact_match: expect.any(Number) })
          for (const b of ['arith', 'reverse']) {
            expect(r.benchmarks?.[b]).toMatchObject({ n: 40, acc: expect.any(Number), acc_norm: expect.any(Number) })
            expect(r.vs_base?.[b].acc).toBeCloseTo(r.benchmarks![b].acc - base.benchmarks[b].acc, 12)
            expect(r.vs_base?.[b].acc_norm).toBeCloseTo(r.benchmarks![b].acc_norm - base.benchmarks[b].acc_norm, 12)
          }
        }
      }
    }

    // scores.csv: every (dataset, λ, seed) × (arith, exact_match, reverse); acc_norm is the score.
    const csv = fs.readFileSync(path.join(out, 'scores.csv'), 'utf8').trim().split('\n')
    expect(csv[0]).toBe('dataset,plw,seed,benchmark,score')
    expect(csv).toHaveLength(1 + 2 * 3 * 2 * 3)
    const r0 = JSON.parse(fs.readFileSync(path.join(out, 'words', 'lambda-0.5', 'seed-2', 'result.json'), 'utf8')) as RunResult
    expect(csv).toContain(`words,0.5,2,arith,${r0.benchmarks!.arith.acc_norm}`)
    expect(csv).toContain(`words,0.5,2,exact_match,${r0.test_exact_match}`)

    // results.md: each dataset's stats line, its λ × benchmark table with the base row and the aggregate, the analysis.
    const md = fs.readFileSync(path.join(out, 'results.md'), 'utf8')
    expect(md).toContain('## arith')
    expect(md).toContain('## words')
    expect(md).toMatch(/`plwtune stats`: 60 records, completion\/prompt ratio/)
    expect(md).toContain('| λ | arith | exact_match | reverse | **aggregate** |')
    expect(md).toMatch(/\| base model \| [\d.]+% \| — \| [\d.]+% \| [\d.]+% \|/)
    expect(md).toMatch(/\| 0\.5 \| [\d.]+% \([\d.]+–[\d.]+\) [+−±][\d.]+ pts \|/)
    expect(md).toMatch(/Does λ matter\?/)
    expect(md).toMatch(/Forgetting: the base model/)
    const analysis = JSON.parse(fs.readFileSync(path.join(out, 'analysis.json'), 'utf8'))
    expect(Object.keys(analysis.datasets).sort()).toEqual(['arith', 'words'])
    expect(analysis.m).toBe(8) // weight, weight², two benchmark terms × 2 datasets
    expect(analysis.datasets.arith.n).toBe(18)

    // The plots: λ on the rank scale, labelled with the real values; the base as a dashed line.
    const svg = fs.readFileSync(path.join(out, 'arith', 'bench-arith.svg'), 'utf8')
    expect([...svg.matchAll(/class="tick-x" data-value="([^"]+)"/g)].map((m) => m[1])).toEqual(['0', '0.5', '1'])
    expect(svg).toMatch(/<line class="reference" data-value="[\d.]+"/)
    expect(svg).toContain('the study&apos;s rank scale')
    expect(fs.readFileSync(path.join(out, 'arith', 'aggregate.svg'), 'utf8')).toMatch(/aggregate score \(mean over 2 benchmarks\)/)

    // plwtune sweep analyze OUT: the same analysis from scores.csv.
    const a = { out: sink(), err: sink() }
    expect(await sweepAnalyzeCommand([out, '--json'], { out: a.out.stream, err: a.err.stream })).toBe(0)
    expect(JSON.parse(a.out.text())).toEqual(analysis)

    // A second invocation: every run finished already, the base not rescored.
    const baseAt = fs.statSync(path.join(out, 'base.json')).mtimeMs
    const io2 = { out: sink(), err: sink() }
    expect(await sweepCommand(args, { out: io2.out.stream, err: io2.err.stream })).toBe(0)
    expect((io2.out.text().match(/\] λ = [\d.]+, seed \d: finished already/g) ?? []).length).toBe(12)
    expect(io2.out.text()).not.toMatch(/scoring/)
    expect(fs.statSync(path.join(out, 'base.json')).mtimeMs).toBe(baseAt)
  }, 120000)

  test('without --model there is no base: forgetting is said not to be measured', async () => {
    const dir = tmp('plw-study-')
    const mc = writeJsonl(path.join(dir, 'mc.jsonl'), arithmetic(8))
    const out = path.join(dir, 'sweep')
    const io = { out: sink(), err: sink() }
    const code = await sweepCommand(['--lambdas', '0,1', '--seeds', '1', '--out', out, '--benchmarks', `arith=${mc}`, '--device', 'cpu',
      '--demo-records', '80', '--init-n-layer', '1', '--init-n-head', '2', '--init-n-embd', '16', '--init-n-positions', '64',
      '--max-length', '64', '--max-steps', '2', '--batch-size', '8', '--generate-eval', '0', '--template', DEMO_TEMPLATE],
    { out: io.out.stream, err: io.err.stream })
    expect({ code, err: io.err.text() }).toEqual({ code: 0, err: '' })
    expect(fs.existsSync(path.join(out, 'base.json'))).toBe(false)
    const md = fs.readFileSync(path.join(out, 'results.md'), 'utf8')
    expect(md).toMatch(/Forgetting: not measured: without --model/)
    expect(md).toMatch(/`plwtune stats` \(demo\): 80 records/)
    expect(fs.existsSync(path.join(out, 'bench-arith.svg'))).toBe(true)
    const r = JSON.parse(fs.readFileSync(path.join(out, 'lambda-1', 'seed-1', 'result.json'), 'utf8')) as RunResult
    expect(r.benchmarks?.arith.n).toBe(8)
    expect(r.vs_base).toBeUndefined()
  })
})

describe('the study\'s flags', () => {
  test('--data repeated: a dataset per file, named by it; same names, --shots alone and a bad --alpha are errors', () => {
    const dir = tmp('plw-study-flags-')
    const a = writeJsonl(path.join(dir, 'alpaca.json'), generateDemoRecords(10, 1))
    const b = writeJsonl(path.join(dir, 'alpaca-short.jsonl'), generateDemoRecords(10, 2))
    const spec = parseSweepArgs(['--data', a, '--data', b, '--out', 'o', '--test-split', '0.2'])!
    expect(spec.datasets).toEqual([{ name: 'alpaca', data: a, out: path.join('o', 'alpaca') }, { name: 'alpaca-short', data: b, out: path.join('o', 'alpaca-short') }])
    expect(spec.base.data).toBe(path.resolve(a))
    expect(spec.benchmarks).toEqual([])
    expect(parseSweepArgs(['--out', 'o'])!.datasets).toEqual([{ name: 'demo', data: null, out: 'o' }])
    fs.mkdirSync(path.join(dir, 'x'))
    const c = writeJsonl(path.join(dir, 'x', 'alpaca.json'), generateDemoRecords(10, 3))
    expect(() => parseSweepArgs(['--data', a, '--data', c])).toThrow(/have the same name "alpaca"/)
    expect(() => parseSweepArgs(['--shots', 'arc=1'])).toThrow(/--shots needs --benchmarks/)
    expect(() => parseSweepArgs(['--alpha', '2'])).toThrow(/--alpha: expected a number in \(0, 1\)/)
    const withBench = parseSweepArgs(['--benchmarks', 'arc=a.jsonl,piqa=p.jsonl', '--shots', 'arc=3'])!
    expect(withBench.benchmarks).toEqual([{ name: 'arc', file: 'a.jsonl', shots: 3 }, { name: 'piqa', file: 'p.jsonl', shots: 0 }])
  })
})
