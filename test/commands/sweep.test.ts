/**
 * plwtune sweep: tiny runs end to end (every λ × seed, the reports, an interrupted sweep
 * resumed), the aggregation and its verdict on synthetic numbers, the flags, and the plot.
 */
import { spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { Writable } from 'node:stream'
import { sweepCommand } from '../../ts/commands/sweep'
import { loadConfig } from '../../ts/commands/train'
import { renderSweepPlot } from '../../ts/sweep/plot'
import { CSV_HEADER, resultsCsv, resultsMarkdown } from '../../ts/sweep/report'
import { SweepEvent } from '../../ts/sweep/run'
import { DEFAULT_LAMBDAS, MetricInfo, metricInfo, parseSweepArgs, RunResult } from '../../ts/sweep/spec'
import { formatSpread, summarize } from '../../ts/sweep/summary'
import { resolveConfig } from '../../ts/train/config'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-sweep-'))

function sink(): { stream: Writable; text: () => string } {
  let text = ''
  const stream = new Writable({ write(chunk, _enc, cb) { text += String(chunk); cb() } })
  return { stream, text: () => text }
}

/** The demo set, tiny: a 1-layer, 16-channel GPT on 200 records, 6 steps, 4 answers generated per run. */
const TINY = ['--device', 'cpu', '--demo-records', '200', '--init-n-layer', '1', '--init-n-head', '2', '--init-n-embd', '16',
  '--init-n-positions', '64', '--max-length', '64', '--max-steps', '6', '--batch-size', '8', '--eval-every', '2',
  '--generate-eval', '4', '--template', '{instruction}\nInput: {input}\nAnswer: {output}']

const hasRsvg = spawnSync('rsvg-convert', ['--version']).status === 0

describe('plwtune sweep, end to end on tiny runs', () => {
  test('every λ × seed runs; reports are written; an interrupted sweep resumes, skipping finished runs', async () => {
    const out = tmp()
    const args = ['--lambdas', '1,0,0.5', '--seeds', '1,2', '--out', out, ...TINY]

    // First invocation: stop in the middle of the second run (λ = 0, seed 2) as Ctrl-C would.
    const controller = new AbortController()
    const first: SweepEvent[] = []
    const io1 = { out: sink(), err: sink() }
    const code1 = await sweepCommand(args, { out: io1.out.stream, err: io1.err.stream }, {
      signal: controller.signal,
      onEvent: (e) => {
        first.push(e)
        if (e.type === 'step' && e.lambda === 0 && e.seed === 2 && e.step === 3) controller.abort()
      },
    })
    expect(code1).toBe(130)
    expect(first.filter((e) => e.type === 'finish').map((e) => e.type === 'finish' && [e.lambda, e.seed])).toEqual([[0, 1]])
    const run = (l: string, s: number) => path.join(out, `lambda-${l}`, `seed-${s}`)
    expect(fs.existsSync(path.join(run('0', 1), 'result.json'))).toBe(true)
    expect(fs.existsSync(path.join(run('0', 2), 'result.json'))).toBe(false)
    expect(fs.existsSync(path.join(run('0', 2), 'checkpoints', 'step-3', 'trainer_state.json'))).toBe(true)
    expect(fs.readFileSync(path.join(out, 'results.md'), 'utf8')).toContain('Partial: 1 of 6 runs finished')
    expect(fs.readFileSync(path.join(out, 'results.csv'), 'utf8').trim().split('\n')).toHaveLength(2)
    expect(io1.out.text()).toMatch(/\[2\/6\] λ = 0, seed 2: interrupted at step 3/)
    const finishedAt = fs.statSync(path.join(run('0', 1), 'result.json')).mtimeMs
    const weightsAt = fs.statSync(path.join(run('0', 1), 'final', 'model.safetensors')).mtimeMs

    // Second invocation: the finished run is skipped, the interrupted one resumed from step 3.
    const second: SweepEvent[] = []
    const io2 = { out: sink(), err: sink() }
    expect(await sweepCommand(args, { out: io2.out.stream, err: io2.err.stream }, { onEvent: (e) => second.push(e) })).toBe(0)
    expect(second.filter((e) => e.type === 'skip').map((e) => e.type === 'skip' && [e.lambda, e.seed])).toEqual([[0, 1]])
    const starts = second.filter((e): e is Extract<SweepEvent, { type: 'start' }> => e.type === 'start')
    expect(starts.map((e) => [e.lambda, e.seed, e.resumeFrom])).toEqual([[0, 2, 3], [0.5, 1, null], [0.5, 2, null], [1, 1, null], [1, 2, null]])
    expect(fs.statSync(path.join(run('0', 1), 'result.json')).mtimeMs).toBe(finishedAt)
    expect(fs.statSync(path.join(run('0', 1), 'final', 'model.safetensors')).mtimeMs).toBe(weightsAt)
    expect(io2.out.text()).toMatch(/\[1\/6\] λ = 0, seed 1: finished already/)
    expect(io2.out.text()).toMatch(/\[2\/6\] λ = 0, seed 2: resuming .* from step 3/)
    // The resumed run logged each step once.
    const steps = fs.readFileSync(path.join(run('0', 2), 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)
    expect(steps).toEqual([1, 2, 3, 4, 5, 6])

    // Every run is a normal run directory with its λ and seed, and a result.
    for (const l of ['0', '0.5', '1']) {
      for (const s of [1, 2]) {
        const cfg = JSON.parse(fs.readFileSync(path.join(run(l, s), 'config.json'), 'utf8'))
        expect([cfg.promptLossWeight, cfg.seed, cfg.maxSteps, cfg.demoRecords]).toEqual([Number(l), s, 6, 200])
        for (const f of ['final/model.safetensors', 'metrics.jsonl', 'test_responses.jsonl', 'result.json']) {
          expect({ f, exists: fs.existsSync(path.join(run(l, s), f)) }).toEqual({ f, exists: true })
        }
        const r = JSON.parse(fs.readFileSync(path.join(run(l, s), 'result.json'), 'utf8')) as RunResult
        expect(r).toMatchObject({ lambda: Number(l), seed: s, stop_reason: 'completed', steps: 6,
          val_completion_loss: expect.any(Number), test_completion_loss: expect.any(Number), test_exact_match: expect.any(Number) })
      }
    }

    // results.csv: the header and one row per run, by λ then seed.
    const csv = fs.readFileSync(path.join(out, 'results.csv'), 'utf8').trim().split('\n')
    expect(csv[0]).toBe('lambda,seed,val_completion_loss,test_completion_loss,test_exact_match,steps,seconds')
    expect(csv.slice(1).map((l) => l.split(',').slice(0, 2).join(','))).toEqual(['0,1', '0,2', '0.5,1', '0.5,2', '1,1', '1,2'])
    for (const line of csv.slice(1)) {
      const cells = line.split(',')
      expect(cells).toHaveLength(7)
      expect(cells.every((c) => c !== '' && Number.isFinite(Number(c)))).toBe(true)
    }

    // results.md: one row per λ with a cell per seed, exactly one best, the verdict; the default metric is exact match.
    const md = fs.readFileSync(path.join(out, 'results.md'), 'utf8')
    expect(md).not.toContain('Partial')
    expect(md).toContain('| λ | seed 1 | seed 2 | mean (min–max) | vs best |')
    const lines = md.split('\n')
    const head = lines.indexOf('| λ | seed 1 | seed 2 | mean (min–max) | vs best |')
    const rows = lines.slice(head + 2, lines.indexOf('', head))
    expect(rows.map((l) => l.split(' | ')[0].replace(/[|* ]/g, ''))).toEqual(['0', '0.5', '1'])
    expect(rows.every((l) => l.split(' | ').length === 5)).toBe(true)
    expect(rows.filter((l) => l.includes('**best**'))).toHaveLength(1)
    expect(md).toMatch(/Metric: test exact match/)
    expect(md).toMatch(/^Best: λ = (0|0\.5|1), mean test exact match/m)
    expect(md).toMatch(/exceed the seed spread/)
    expect(io2.out.text()).toMatch(/Best: λ = /)

    // sweep.svg: categorical λ labels, one dot per run, a mean per λ, the best highlighted; it renders.
    const svg = fs.readFileSync(path.join(out, 'sweep.svg'), 'utf8')
    expect([...svg.matchAll(/class="tick-x" data-value="([^"]+)"/g)].map((m) => m[1])).toEqual(['0', '0.5', '1'])
    expect([...svg.matchAll(/<g class="seed"[^>]*>(.*?)<\/g>/g)].map((m) => (m[1].match(/<circle/g) ?? []).length)).toEqual([3, 3])
    expect((svg.match(/<circle data-lambda=/g) ?? []).length).toBe(3)
    expect(svg).toMatch(/<rect class="best" data-lambda="(0|0\.5|1)"/)
    if (hasRsvg) {
      const png = path.join(out, 'sweep.png')
      expect(spawnSync('rsvg-convert', [path.join(out, 'sweep.svg'), '-o', png]).status).toBe(0)
      expect(fs.statSync(png).size).toBeGreaterThan(1000)
    }

    // Another setting in the same directory is refused, naming it; a new λ extends the sweep.
    const io3 = { out: sink(), err: sink() }
    expect(await sweepCommand([...args, '--lr', '0.01'], { out: io3.out.stream, err: io3.err.stream })).toBe(2)
    expect(io3.err.text()).toMatch(/holds a sweep with other settings \(lr: 0.002 there, 0.01 now\)/)
    const fourth: SweepEvent[] = []
    const io4 = { out: sink(), err: sink() }
    const extended = ['--lambdas', '0,0.1,0.5,1', '--seeds', '1,2', '--out', out, ...TINY]
    expect(await sweepCommand(extended, { out: io4.out.stream, err: io4.err.stream }, { onEvent: (e) => fourth.push(e) })).toBe(0)
    expect(fourth.filter((e) => e.type === 'start').map((e) => e.type === 'start' && [e.lambda, e.seed])).toEqual([[0.1, 1], [0.1, 2]])
    expect(fs.readFileSync(path.join(out, 'results.csv'), 'utf8').trim().split('\n')).toHaveLength(9)
  })

  test('Ctrl-C to the process group (twice, as npm forwards it) stops the current run with a checkpoint; exit 130', async () => {
    const out = tmp()
    const script = `require(${JSON.stringify(path.join(__dirname, '..', '..', 'dist', 'ts', 'commands', 'sweep.js'))})` +
      '.sweepCommand(process.argv.slice(1)).then((c) => { process.exitCode = c })'
    const args = ['--lambdas', '0,1', '--seeds', '1', '--out', out, ...TINY, '--max-steps', '400', '--eval-every', '0', '--generate-eval', '0']
    const child = spawn(process.execPath, ['-e', script, '--', ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += String(d) })
    child.stderr.on('data', (d) => { stderr += String(d) })
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)))
    const metrics = path.join(out, 'lambda-1', 'seed-1', 'metrics.jsonl')
    const deadline = Date.now() + 60000
    while (!(fs.existsSync(metrics) && fs.readFileSync(metrics, 'utf8').split('\n').length > 3) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20))
    }
    expect({ started: fs.existsSync(metrics), stderr }).toEqual({ started: true, stderr: '' })
    process.kill(-child.pid!, 'SIGINT')
    await new Promise((r) => setTimeout(r, 100))
    try {
      process.kill(-child.pid!, 'SIGINT')
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ESRCH')
    }
    expect(await exited).toBe(130)
    expect(stderr).toMatch(/plwtune sweep: stopping after this step and saving a checkpoint/)
    expect(stdout).toMatch(/\[2\/2\] λ = 1, seed 1: interrupted at step \d+ \(checkpoint saved\)/)
    expect(stdout).toMatch(/1 of 2 runs finished; run the same command again to continue/)
    expect(fs.existsSync(path.join(out, 'lambda-0', 'seed-1', 'result.json'))).toBe(true)
    expect(fs.existsSync(path.join(out, 'lambda-1', 'seed-1', 'result.json'))).toBe(false)
    expect(fs.readdirSync(path.join(out, 'lambda-1', 'seed-1', 'checkpoints'))).toHaveLength(1)
  })

  test('a directory of the user\'s files is not a sweep: refused, untouched', async () => {
    const out = tmp()
    fs.writeFileSync(path.join(out, 'notes.txt'), 'mine')
    const io = { out: sink(), err: sink() }
    const code = await sweepCommand(['--lambdas', '0', '--seeds', '1', '--out', out, ...TINY], { out: io.out.stream, err: io.err.stream })
    expect(code).toBe(2)
    expect(io.err.text()).toMatch(/holds files but no sweep\.json \(not a plwtune sweep\)/)
    expect(fs.readdirSync(out)).toEqual(['notes.txt'])
  })

  test('--metric completion_loss ranks on the best validation completion loss', async () => {
    const out = tmp()
    const io = { out: sink(), err: sink() }
    const code = await sweepCommand(['--lambdas', '0,1', '--seeds', '3', '--metric', 'completion_loss', '--out', out, ...TINY, '--generate-eval', '0'],
      { out: io.out.stream, err: io.err.stream })
    expect(code).toBe(0)
    const results = ['0', '1'].map((l) => JSON.parse(fs.readFileSync(path.join(out, `lambda-${l}`, 'seed-3', 'result.json'), 'utf8')) as RunResult)
    expect(results.map((r) => r.test_exact_match)).toEqual([null, null])
    const best = results[0].val_completion_loss! <= results[1].val_completion_loss! ? '0' : '1'
    const md = fs.readFileSync(path.join(out, 'results.md'), 'utf8')
    expect(md).toContain(`| **${best}** |`)
    expect(md).toContain('| λ | seed 3 | mean | vs best |')
    expect(md).toMatch(/With one seed there is no spread/)
    expect(fs.readFileSync(path.join(out, 'results.csv'), 'utf8').trim().split('\n')[1]).toMatch(/^0,3,[\d.]+,[\d.]+,,6,/)
  })
})

// ---------------------------------------------------------------------------------------

const LOSS: MetricInfo = metricInfo('completion_loss', { valSplit: 0.05, valData: null })
const EM: MetricInfo = metricInfo('exact_match', { valSplit: 0.05, valData: null })

function runs(key: 'val_completion_loss' | 'test_exact_match', table: Record<string, Array<number | null>>, seeds: number[]): RunResult[] {
  return Object.entries(table).flatMap(([l, xs]) => xs.map((x, j) => ({
    lambda: Number(l), seed: seeds[j], stop_reason: x === null ? 'non_finite' as const : 'completed' as const,
    val_completion_loss: null, test_completion_loss: null, test_exact_match: null, steps: 10, seconds: 1, [key]: x,
  })))
}

describe('aggregation and the verdict (synthetic numbers)', () => {
  test('completion loss, 3 seeds: the lowest mean wins; mean ± sample std; overlap decides the verdict', () => {
    const lambdas = [0, 0.1, 1]
    const seeds = [1, 2, 3]
    const s = summarize(runs('val_completion_loss', { 0: [2.0, 2.1, 2.2], 0.1: [1.5, 1.6, 1.7], 1: [1.55, 1.8, 1.75] }, seeds), lambdas, seeds, LOSS)
    expect(s.spreadKind).toBe('std')
    expect(s.best).toBe(1)
    expect(s.rows[1].mean).toBeCloseTo(1.6, 12)
    expect(s.rows[1].std).toBeCloseTo(0.1, 12) // sample std (n − 1) of 1.5, 1.6, 1.7
    expect(formatSpread(s.rows[1], 'std', LOSS)).toBe('1.6000 ± 0.1000')
    expect(s.overlapping).toEqual([2]) // λ = 1: 1.7 ± 0.13 overlaps 1.6 ± 0.1; λ = 0: 2.1 ± 0.1 does not
    expect(s.separated).toBe(false)
    expect(s.verdict[0]).toBe('Best: λ = 0.1, mean val completion loss 1.6000 over 3 seeds (std 0.1000); the lowest of 3 λ.')
    expect(s.verdict[1]).toMatch(/λ = 1 overlaps the best's mean ± std.*λ = 0 is clearly higher.*better than the runner-up λ = 1 .* in 3 of 3 seeds/)
    expect(s.finished).toBe(9)

    const apart = summarize(runs('val_completion_loss', { 0: [2.0, 2.1, 2.2], 0.1: [1.5, 1.6, 1.7], 1: [1.9, 1.95, 2.0] }, seeds), lambdas, seeds, LOSS)
    expect(apart.separated).toBe(true)
    expect(apart.verdict[1]).toMatch(/^The differences exceed the seed spread/)
  })

  test('exact match, 2 seeds: the highest mean wins; min–max is the spread', () => {
    const s = summarize(runs('test_exact_match', { 0: [0.40, 0.42], 0.05: [0.44, 0.47], 0.1: [0.48, 0.45], 1: [0.30, 0.33] }, [1, 2]),
      [0, 0.05, 0.1, 1], [1, 2], EM)
    expect(s.spreadKind).toBe('range')
    expect(s.best).toBe(2)
    expect(s.rows[2].interval).toEqual([0.45, 0.48])
    expect(formatSpread(s.rows[2], 'range', EM)).toBe('46.5% (45.0–48.0%)')
    expect(s.overlapping).toEqual([1])
    expect(s.verdict[0]).toBe('Best: λ = 0.1, mean test exact match 46.5% over 2 seeds (min–max 45.0–48.0%); the highest of 4 λ.')
    expect(s.verdict[1]).toMatch(/runner-up λ = 0.05 \(mean 45.5%, −1.0 pts from the best\) in 1 of 2 seeds/)
    const md = resultsMarkdown(s, runs('test_exact_match', { 0: [0.40, 0.42], 0.05: [0.44, 0.47], 0.1: [0.48, 0.45], 1: [0.30, 0.33] }, [1, 2]),
      resolveConfig({ source: 'test', values: {} }))
    expect(md).toContain('| **0.1** | 48.0% | 45.0% | **46.5% (45.0–48.0%)** | **best** |')
    expect(md).toContain('| 1 | 30.0% | 33.0% | 31.5% (30.0–33.0%) | −15.0 pts |')
  })

  test('one seed has no spread; ties, diverged runs and an unfinished grid are said so', () => {
    const one = summarize(runs('val_completion_loss', { 0: [1.2], 0.1: [1.1] }, [7]), [0, 0.1], [7], LOSS)
    expect(one.spreadKind).toBe('none')
    expect(one.separated).toBeNull()
    expect(one.verdict[1]).toMatch(/With one seed there is no spread.*--seeds 7,8,9/)

    const tie = summarize(runs('test_exact_match', { 0: [0.5, 0.5], 0.1: [0.5, 0.5] }, [1, 2]), [0, 0.1], [1, 2], EM)
    expect(tie.best).toBe(0)
    expect(tie.tied).toEqual([1])
    expect(tie.verdict[1]).toMatch(/λ = 0 and 0.1 tie on the mean/)

    // λ = 1 seed 2 diverged: out of the mean; λ = 0.5 has not run at all.
    const partial = summarize(runs('val_completion_loss', { 0: [1.3, 1.4], 1: [1.0, null] }, [1, 2]), [0, 0.5, 1], [1, 2], LOSS)
    expect(partial.finished).toBe(4)
    expect(partial.total).toBe(6)
    expect(partial.rows[2]).toMatchObject({ n: 1, mean: 1.0, diverged: [false, true] })
    expect(partial.rows[1].mean).toBeNull()
    expect(partial.best).toBe(2)
    expect(partial.verdict.join(' ')).toMatch(/Only one of its seeds has finished/)
    expect(partial.verdict.join(' ')).toMatch(/Diverged \(non-finite loss, left out of the means\): λ = 1 seed 2/)
    const md = resultsMarkdown(partial, [], resolveConfig({ source: 'test', values: {} }))
    expect(md).toContain('Partial: 4 of 6 runs finished')
    expect(md).toContain('| **1** | 1.0000 | diverged |')
    expect(summarize([], [0, 1], [1, 2], LOSS).verdict).toEqual(['No run has finished yet.'])
  })

  test('results.csv: one row per run by λ then seed, empty cells for missing values', () => {
    const csv = resultsCsv([
      { lambda: 0.1, seed: 2, stop_reason: 'completed', val_completion_loss: 1.5, test_completion_loss: 1.6, test_exact_match: null, steps: 9, seconds: 3.14159 },
      { lambda: 0, seed: 1, stop_reason: 'completed', val_completion_loss: 1.25, test_completion_loss: null, test_exact_match: 0.5, steps: 9, seconds: 2 },
    ]).trim().split('\n')
    expect(csv).toEqual([CSV_HEADER, '0,1,1.25,,0.5,9,2.0', '0.1,2,1.5,1.6,,9,3.1'])
  })
})

describe('flags', () => {
  const parse = (...a: string[]) => parseSweepArgs(a)

  test('defaults: the study grid, seeds 1 and 2, the demo preset, exact match when answers are generated', () => {
    const s = parse()!
    expect(s.lambdas).toEqual(DEFAULT_LAMBDAS)
    expect(s.lambdas).toEqual([0, 0.01, 0.05, 0.1, 0.5, 1])
    expect(s.seeds).toEqual([1, 2])
    expect(s.out).toBe('runs/sweep')
    expect(s.metric).toBe('exact_match')
    expect(s.base).toMatchObject({ maxSteps: 1000, packing: true, generateEval: 200 })
    expect(parse('--generate-eval', '0')!.metric).toBe('completion_loss')
    expect(parse('--lambdas=0.5,0,0.1', '--seeds', '3,1', '--lr', '1e-3', '--out', 'x')).toMatchObject({
      lambdas: [0, 0.1, 0.5], seeds: [1, 3], out: 'x', base: { lr: 1e-3 } })
    expect(parse('--help')).toBeNull()
  })

  test('bad values are errors naming them', () => {
    expect(() => parse('--lambdas', '0,1.5')).toThrow('--lambdas: 1.5 is outside [0, 1]')
    expect(() => parse('--lambdas', '-0.1')).toThrow('--lambdas: -0.1 is outside [0, 1]')
    expect(() => parse('--lambdas', '0,x')).toThrow(/--lambdas: expected comma-separated numbers, received "0,x"/)
    expect(() => parse('--lambdas', '0.1,0.10')).toThrow('--lambdas lists 0.1 twice')
    expect(() => parse('--seeds', '1,2.5')).toThrow('--seeds: Expected integers ≥ 0 but received 2.5')
    expect(() => parse('--metric', 'accuracy')).toThrow(/--metric: Expected completion_loss or exact_match but received "accuracy"/)
    expect(() => parse('--metric', 'exact_match', '--generate-eval', '0')).toThrow(/needs generated test answers/)
    expect(() => parse('--prompt-loss-weight', '0.1')).toThrow('--prompt-loss-weight: the sweep varies it: use --lambdas')
    expect(() => parse('--seed', '4')).toThrow('--seed: the sweep varies it: use --seeds')
    expect(() => parse('--resume', 'runs/a')).toThrow(/--resume: a sweep resumes by running the same command again/)
    expect(() => parse('--lamdas', '0,1')).toThrow(/unknown flag --lamdas/)
    expect(() => parse('--lr', 'fast')).toThrow(/Expected a number for lr/)
  })

  test('datasets as a list in --config: one grid per dataset; not with --data too; train refuses a list', () => {
    const dir = tmp()
    const config = path.join(dir, 'study.json')
    fs.writeFileSync(config, JSON.stringify({ data: ['alpaca.json', 'alpaca-short.jsonl'], maxSteps: 10 }))
    const s = parse('--config', config, '--out', path.join(dir, 'study'))!
    expect(s.datasets.map((d) => [d.name, d.data, path.relative(dir, d.out)])).toEqual([
      ['alpaca', 'alpaca.json', path.join('study', 'alpaca')], ['alpaca-short', 'alpaca-short.jsonl', path.join('study', 'alpaca-short')]])
    expect(s.base.maxSteps).toBe(10)
    expect(() => parse('--config', config, '--data', 'b.json')).toThrow('--data and a list of datasets in --config: give the datasets one way')
    expect(() => loadConfig(['--config', config])).toThrow(/"data" is a list: several datasets are a sweep's \(plwtune sweep\); train takes one file/)
    fs.writeFileSync(config, JSON.stringify({ data: [] }))
    expect(() => parse('--config', config)).toThrow(/"data": Expected a file or a non-empty list of files but received \[\]/)
  })

  test('the command exits 2 with the message; --help exits 0', async () => {
    const io = { out: sink(), err: sink() }
    expect(await sweepCommand(['--lambdas', '0,2'], { out: io.out.stream, err: io.err.stream })).toBe(2)
    expect(io.err.text()).toBe('plwtune sweep: --lambdas: 2 is outside [0, 1] (λ is the loss weight of prompt tokens)\n')
    const help = { out: sink(), err: sink() }
    expect(await sweepCommand(['--help'], { out: help.out.stream, err: help.err.stream })).toBe(0)
    expect(help.out.text()).toMatch(/^Usage: plwtune sweep/)
  })
})

describe('renderSweepPlot', () => {
  const base = { lambdas: [0, 0.01, 0.1, 1], seeds: [1, 2], best: 2 as number | null, metricLabel: 'test exact match', higherIsBetter: true }

  test('categorical λ, a dot per seed, the best highlighted, a percentage axis inside [0, 100]', () => {
    const svg = renderSweepPlot({ ...base, percent: true, values: [[0.9, 0.95], [0.97, 1], [1, 1], [0.5, null]], means: [0.925, 0.985, 1, 0.5],
      spread: [[0.9, 0.95], [0.97, 1], [1, 1], null], spreadLabel: 'min–max over 2 seeds' })
    expect([...svg.matchAll(/class="tick-x" data-value="([^"]+)"[^>]*>([^<]+)</g)].map((m) => m[2])).toEqual(['0', '0.01', '0.1', '1'])
    const yTicks = [...svg.matchAll(/class="tick-y" data-value="([^"]+)"/g)].map((m) => Number(m[1]))
    expect(Math.max(...yTicks)).toBeLessThanOrEqual(100)
    expect(Math.min(...yTicks)).toBeGreaterThanOrEqual(0)
    expect(svg).toContain('<rect class="best" data-lambda="0.1"')
    expect(svg).toContain('best λ = 0.1')
    expect((svg.match(/<circle cx/g) ?? []).length).toBeGreaterThanOrEqual(7) // 7 dots (+ legend)
    expect(svg).toContain('min–max over 2 seeds')
    // x positions are evenly spaced whatever the λ.
    const xs = [...svg.matchAll(/<circle data-lambda="[^"]+" data-value="[^"]+" cx="([\d.]+)"/g)].map((m) => Number(m[1]))
    expect(xs).toHaveLength(4)
    expect(xs[1] - xs[0]).toBeCloseTo(xs[3] - xs[2], 1)
    if (hasRsvg) {
      const dir = tmp()
      fs.writeFileSync(path.join(dir, 'p.svg'), svg)
      expect(spawnSync('rsvg-convert', [path.join(dir, 'p.svg'), '-o', path.join(dir, 'p.png')]).status).toBe(0)
    }
  })

  test('no runs yet, one value, equal values, and escaping draw without error', () => {
    const empty = renderSweepPlot({ ...base, best: null, values: [[null, null], [null, null], [null, null], [null, null]], means: [null, null, null, null] })
    expect(empty).toContain('no finished runs yet')
    const flat = renderSweepPlot({ ...base, metricLabel: 'a < b & "c"', values: [[1, 1], [1, 1], [1, 1], [1, 1]], means: [1, 1, 1, 1] })
    expect(flat).not.toMatch(/NaN|Infinity/)
    expect(flat).toContain('a &lt; b &amp; &quot;c&quot;')
    expect(() => renderSweepPlot({ ...base, lambdas: [], values: [], means: [] })).toThrow(/at least one λ/)
  })
})
