/** The command line: flags and config files checked strictly, and Ctrl-C through a process group. */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { loadConfig, parseTrainArgs } from '../../ts/commands/train'
import { CLI as cli, trainChild } from '../support/cli-child'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-cli-'))

describe('plwtune train flags and config', () => {
  test('every flag the issue lists exists and maps to its key', () => {
    const { values } = parseTrainArgs(['--model', 'm', '--data', 'd', '--val-data', 'v', '--template', 'alpaca',
      '--prompt-loss-weight', '0.1', '--epochs', '2', '--max-steps', '9', '--batch-size', '8', '--micro-batch-size', '4',
      '--lr', '3e-4', '--warmup-steps', '5', '--lr-schedule', 'linear', '--weight-decay', '0.1', '--adam-beta1', '0.8',
      '--adam-beta2', '0.95', '--adam-eps', '1e-6', '--max-grad-norm', '0', '--max-length', '512', '--packing', '--no-shuffle',
      '--val-split', '0.1', '--test-split', '0.1', '--seed', '7', '--eval-every', '10', '--save-every', '20',
      '--early-stopping-patience', '3', '--device', 'cpu', '--out', 'runs/x', '--skip-invalid'])
    expect(values).toEqual({ model: 'm', data: 'd', valData: 'v', template: 'alpaca', promptLossWeight: 0.1, epochs: 2, maxSteps: 9,
      batchSize: 8, microBatchSize: 4, lr: 3e-4, warmupSteps: 5, lrSchedule: 'linear', weightDecay: 0.1, adamBeta1: 0.8,
      adamBeta2: 0.95, adamEps: 1e-6, maxGradNorm: 0, maxLength: 512, packing: true, shuffle: false, valSplit: 0.1,
      testSplit: 0.1, seed: 7, evalEvery: 10, saveEvery: 20, earlyStoppingPatience: 3, device: 'cpu', out: 'runs/x', skipInvalid: true })
  })

  test('unknown keys and wrong types are errors that name them', () => {
    expect(() => loadConfig(['--learning-rate', '1'])).toThrow(/unknown flag --learning-rate/)
    expect(() => loadConfig(['--lr', 'fast'])).toThrow(/Expected a number for lr but received "fast"/)
    expect(() => loadConfig(['--batch-size', '2.5'])).toThrow(/Expected an integer for batchSize/)
    expect(() => loadConfig(['--prompt-loss-weight', '1.5'])).toThrow(/promptLossWeight must be in \[0, 1\]/)
    expect(() => loadConfig(['--lr-schedule', 'step'])).toThrow(/one of cosine, linear, constant/)
    expect(() => loadConfig(['--precision', 'fp16'])).toThrow(/one of f32, bf16, auto/)
    expect(loadConfig(['--precision', 'bf16'])).toMatchObject({ precision: 'bf16' })
    expect(() => loadConfig(['--prompt-loss-weight', 'Infinity'])).toThrow(/Expected a number for promptLossWeight but received Infinity/)
    expect(() => loadConfig(['--lr', '--max-steps', '3'])).toThrow('--lr needs a value (found the flag --max-steps after it)')
    expect(loadConfig(['--min-lr-ratio', '0.5', '--lr', '1e-3'])).toMatchObject({ lr: 1e-3 })
    // resuming has one entry (--resume RUN_DIR alone): a config file cannot smuggle one in
    const cfg = path.join(tmp(), 'run.json')
    fs.writeFileSync(cfg, JSON.stringify({ resume: '/some/other/run', lr: 0.001 }))
    expect(() => loadConfig(['--config', cfg])).toThrow(/"resume" is not a config-file key: a run is continued with --resume RUN_DIR alone/)
    fs.writeFileSync(cfg, JSON.stringify({ resume: null, lr: 0.001 })) // a run's own saved config.json is fine
    expect(loadConfig(['--config', cfg])).toMatchObject({ lr: 0.001, resume: null })
    expect(() => loadConfig(['--batch-size', '6', '--micro-batch-size', '4'])).toThrow(/multiple of microBatchSize/)
    const dir = tmp()
    const file = path.join(dir, 'c.json')
    fs.writeFileSync(file, JSON.stringify({ lr: 1e-4, epoch: 3 }))
    expect(() => loadConfig(['--config', file])).toThrow(/c.json: unknown key epoch \(did you mean epochs\?\)/)
    fs.writeFileSync(file, JSON.stringify({ packing: 'yes' }))
    expect(() => loadConfig(['--config', file])).toThrow(/Expected true or false for packing/)
    fs.writeFileSync(file, JSON.stringify({ lr: 0.5, seed: 1 }))
    const c = loadConfig(['--config', file, '--lr', '0.25'])
    expect(c).toMatchObject({ lr: 0.25, seed: 1 }) // flags override the file
    expect(() => loadConfig(['--resume', dir, '--lr', '1'])).toThrow(/--resume continues a run with its saved configuration/)
  })

  test('the demo preset applies only without --model and --data', () => {
    expect(loadConfig([])).toMatchObject({ maxSteps: 1000, packing: true, out: 'runs/demo' })
    expect(loadConfig(['--data', 'x.jsonl'])).toMatchObject({ maxSteps: 0, packing: false, out: 'runs/latest' })
  })

  test('--help prints the flags and exits 0; a bad flag exits 2', () => {
    const help = spawnSync(process.execPath, [cli, 'train', '--help'], { encoding: 'utf8' })
    expect(help.status).toBe(0)
    expect(help.stdout).toContain('--prompt-loss-weight')
    const bad = spawnSync(process.execPath, [cli, 'train', '--nope'], { encoding: 'utf8' })
    expect(bad.status).toBe(2)
    expect(bad.stderr).toMatch(/unknown flag --nope/)
  })

  test('SIGTERM (a process manager, docker stop) saves a checkpoint and exits 130, as Ctrl-C does', async () => {
    const out = tmp()
    const { child, stderr } = await trainChild(out, false)
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)))
    child.kill('SIGTERM')
    expect(await exited).toBe(130)
    expect(stderr()).toMatch(/SIGTERM: stopping after this step and saving a checkpoint/)
    expect(fs.readdirSync(path.join(out, 'checkpoints'))).toHaveLength(1)
  })

  test('Ctrl-C to the process group (twice, as npm forwards it) saves a checkpoint and exits 130; --resume finishes', async () => {
    const out = tmp()
    const { child, stderr, metricsFile } = await trainChild(out, true)
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)))
    process.kill(-child.pid!, 'SIGINT') // the terminal's Ctrl-C: the whole group
    await new Promise((r) => setTimeout(r, 100))
    try {
      process.kill(-child.pid!, 'SIGINT') // npm/npx forward it again (unless the run has already shut down)
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ESRCH')
    }
    const code = await exited
    expect(code).toBe(130)
    expect(stderr()).toMatch(/stopping after this step and saving a checkpoint/)
    const ckpts = fs.readdirSync(path.join(out, 'checkpoints'))
    expect(ckpts).toHaveLength(1)
    const stoppedAt = Number(/step-(\d+)/.exec(ckpts[0])![1])
    expect(stoppedAt).toBeGreaterThanOrEqual(3)
    const lines = fs.readFileSync(metricsFile, 'utf8').trim().split('\n').length
    expect(lines).toBe(stoppedAt)
    // Resume, capped by a short run: the saved config is used, so patch maxSteps in it.
    const cfgFile = path.join(out, 'config.json')
    const saved = JSON.parse(fs.readFileSync(cfgFile, 'utf8'))
    fs.writeFileSync(cfgFile, JSON.stringify({ ...saved, maxSteps: stoppedAt + 2 }))
    const resumed = spawnSync(process.execPath, [cli, 'train', '--resume', out], { encoding: 'utf8' })
    expect(resumed.status).toBe(0)
    expect(resumed.stdout).toMatch(new RegExp(`from step ${stoppedAt}`))
    expect(fs.readFileSync(metricsFile, 'utf8').trim().split('\n')).toHaveLength(stoppedAt + 2)
  }, 120000)
})
