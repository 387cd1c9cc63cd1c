/**
 * Ctrl-C while a sweep scores benchmarks: scoring stops between batches (not after the whole
 * benchmark), the trained run is kept as result.unscored.json, and the next invocation scores it
 * without training again. Also: Ctrl-C while the base model is scored stops the sweep there.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Writable } from 'node:stream'
import { sweepCommand } from '../../ts/commands/sweep'
import { DEMO_TEMPLATE, generateDemoRecords } from '../../ts/demo/tasks'
import { SweepEvent } from '../../ts/sweep/run'
import { RunResult } from '../../ts/sweep/spec'
import { tinyModelDir, tmp, writeJsonl } from '../commands/tiny-model'

function sink(): { stream: Writable; text: () => string } {
  let text = ''
  const stream = new Writable({ write(chunk, _enc, cb) { text += String(chunk); cb() } })
  return { stream, text: () => text }
}

/** 120 two-way questions: enough batches (of 16) that an abort lands between them. */
function questions(n: number): unknown[] {
  return Array.from({ length: n }, (_, i) => ({ context: `${i}+1=`, choices: [String(i + 1), String(i + 2)], answer: 0 }))
}

describe('plwtune sweep: Ctrl-C during benchmark scoring', () => {
  test('stops between batches, keeps the training, and the next invocation only scores', async () => {
    const dir = tmp('plw-sweep-score-')
    const model = await tinyModelDir()
    const data = writeJsonl(path.join(dir, 'data.jsonl'), generateDemoRecords(40, 3, { families: ['add', 'max'] }))
    const mc = writeJsonl(path.join(dir, 'mc.jsonl'), questions(120))
    const out = path.join(dir, 'sweep')
    const args = ['--model', model, '--data', data, '--lambdas', '0.1', '--seeds', '1', '--out', out, '--benchmarks', `q=${mc}`,
      '--device', 'cpu', '--template', DEMO_TEMPLATE, '--max-steps', '4', '--batch-size', '8', '--max-length', '64',
      '--eval-every', '2', '--val-split', '0.1', '--test-split', '0.1', '--generate-eval', '2', '--max-new-tokens', '4']
    const run = path.join(out, 'lambda-0.1', 'seed-1')

    // 1. Abort once the run's scoring starts (the base model has been scored by then).
    const controller = new AbortController()
    const first: SweepEvent[] = []
    const io1 = { out: sink(), err: sink() }
    const code1 = await sweepCommand(args, { out: io1.out.stream, err: io1.err.stream }, {
      signal: controller.signal,
      onEvent: (e) => { first.push(e); if (e.type === 'scoring') controller.abort() },
    })
    expect(code1).toBe(130)
    expect(first.map((e) => e.type)).toEqual(['start', 'step', 'step', 'step', 'step', 'scoring', 'interrupted'])
    expect(io1.out.text()).toMatch(/interrupted while scoring \(the training is saved\); run the same command again to score it/)
    expect(fs.existsSync(path.join(run, 'result.json'))).toBe(false)
    const unscored = JSON.parse(fs.readFileSync(path.join(run, 'result.unscored.json'), 'utf8')) as RunResult
    expect(unscored).toMatchObject({ lambda: 0.1, seed: 1, steps: 4, stop_reason: 'completed' })
    expect(unscored.benchmarks).toBeUndefined()
    const weightsAt = fs.statSync(path.join(run, 'final', 'model.safetensors')).mtimeMs

    // 2. Again: no training (no step events, the weights untouched), the scores added, the file replaced.
    const second: SweepEvent[] = []
    const io2 = { out: sink(), err: sink() }
    expect(await sweepCommand(args, { out: io2.out.stream, err: io2.err.stream }, { onEvent: (e) => second.push(e) })).toBe(0)
    expect(second.map((e) => e.type)).toEqual(['start', 'scoring', 'finish'])
    expect(io2.out.text()).toMatch(/λ = 0\.1, seed 1: trained already; scoring it/)
    expect(fs.statSync(path.join(run, 'final', 'model.safetensors')).mtimeMs).toBe(weightsAt)
    const result = JSON.parse(fs.readFileSync(path.join(run, 'result.json'), 'utf8')) as RunResult
    expect(result).toMatchObject({ ...unscored, seconds: expect.any(Number), benchmarks: { q: { n: 120 } }, vs_base: { q: expect.any(Object) } })
    expect(result.seconds).toBeGreaterThanOrEqual(unscored.seconds)
    expect(fs.existsSync(path.join(run, 'result.unscored.json'))).toBe(false)
  })

  test('Ctrl-C while the base model is scored stops the sweep before its first run', async () => {
    const dir = tmp('plw-sweep-base-')
    const model = await tinyModelDir()
    const data = writeJsonl(path.join(dir, 'data.jsonl'), generateDemoRecords(40, 3, { families: ['add'] }))
    const mc = writeJsonl(path.join(dir, 'mc.jsonl'), questions(120))
    const out = path.join(dir, 'sweep')
    const controller = new AbortController()
    controller.abort() // already stopped when the base model's scoring starts
    const io = { out: sink(), err: sink() }
    const events: SweepEvent[] = []
    const code = await sweepCommand(['--model', model, '--data', data, '--lambdas', '0', '--seeds', '1', '--out', out,
      '--benchmarks', `q=${mc}`, '--device', 'cpu', '--template', DEMO_TEMPLATE, '--max-steps', '2', '--max-length', '64'],
    { out: io.out.stream, err: io.err.stream }, { signal: controller.signal, onEvent: (e) => events.push(e) })
    expect(code).toBe(130)
    expect(io.out.text()).toMatch(/sweep: interrupted while scoring the base model/)
    expect(events.map((e) => e.type)).toEqual(['interrupted'])
    expect(fs.existsSync(path.join(out, 'base.json'))).toBe(false)
  })
})
