/**
 * kill -9 in the middle of saves and prunes. The CLI trains with a checkpoint at every step and
 * one kept (so every step writes a checkpoint directory, renames it into place and deletes the
 * one before), and is killed with SIGKILL at moments drawn from a seeded generator: while a
 * checkpoint, best/ or final/ is being written (its temporary directory is there), or while the
 * previous checkpoint is being deleted. Then `--resume`, killed again the same way (three kills
 * a seed), and a last `--resume` to the end. Whatever the kills hit, the run must end with final weights
 * bitwise those of the uninterrupted run, every metrics step logged once, and nothing of the
 * killed saves left behind.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { RunDir } from '../../ts/train/run-dir'
import { CliChild, runCli, spawnCli } from '../support/cli-child'
import { rng } from '../support/reference'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-kill-'))

const STEPS = 16
const SEEDS = [1, 2, 3, 4, 5, 6]
/** Kills per seed before the last resume. */
const KILLS = 3


const LEFTOVER = /(\.\d+\.tmp|\.old-\d+|\.deleting-\d+)$/
const list = (dir: string): string[] => { try { return fs.readdirSync(dir) } catch { return [] } }
const leftovers = (out: string): string[] => [...list(out), ...list(path.join(out, 'checkpoints')).map((f) => `checkpoints/${f}`)]
  .filter((f) => LEFTOVER.test(f))

/** Spins (the event loop blocked on purpose) for `us` microseconds: a kill moment finer than a timer's. */
function spin(us: number): void {
  const until = process.hrtime.bigint() + BigInt(Math.round(us * 1000))
  while (process.hrtime.bigint() < until) { /* wait */ }
}

type Moment = { kind: 'checkpoint' | 'prune' | 'best' | 'final'; step: number; delayUs: number }

/**
 * Waits for `moment` in the child's run (polling between event-loop turns), then kills it with
 * SIGKILL. Returns what the kill left (the leftovers), or null when the run ended first.
 */
async function killAt(run: CliChild, out: string, moment: Moment): Promise<string[] | null> {
  const pid = run.child.pid!
  const ckpts = path.join(out, 'checkpoints')
  const seen = (): boolean => {
    switch (moment.kind) {
      case 'checkpoint': return fs.existsSync(path.join(ckpts, `.step-${moment.step}.${pid}.tmp`))
      case 'prune': return fs.existsSync(path.join(ckpts, `.step-${moment.step - 1}.deleting-${pid}`)) // step-N saved, N-1 going
      case 'best': return fs.existsSync(path.join(out, `.best.${pid}.tmp`))
      case 'final': return fs.existsSync(path.join(out, `.final.${pid}.tmp`))
    }
  }
  let ended = false
  void run.exited.then(() => { ended = true })
  while (!ended && !seen()) await new Promise((r) => setImmediate(r))
  if (ended) return null
  spin(moment.delayUs)
  run.child.kill('SIGKILL')
  const { signal } = await run.exited
  if (signal !== 'SIGKILL') return null // it had just ended by itself
  return leftovers(out)
}

describe('kill -9 while checkpoints are written and pruned', () => {
  const dir = tmp()
  const data = path.join(dir, 'd.json')
  fs.writeFileSync(data, JSON.stringify(Array.from({ length: 80 }, (_, i) => ({ instruction: 'Add one.', input: `${i}`, output: `${i + 1}` }))))
  const args = (out: string) => ['train', '--device', 'cpu', '--data', data, '--init-n-layer', '1', '--init-n-head', '2',
    '--init-n-embd', '32', '--init-n-positions', '64', '--max-steps', String(STEPS), '--save-every', '1', '--keep-checkpoints', '1',
    '--batch-size', '4', '--val-split', '0.1', '--eval-every', '3', '--test-split', '0', '--out', out]
  const whole = path.join(dir, 'whole')
  const hits: string[] = []

  beforeAll(() => {
    const r = runCli(args(whole))
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
  })

  afterAll(() => {
    // what the kills interrupted, for the log: the kinds of leftovers they left
    console.log(`kill -9 outcomes over ${SEEDS.length} seeds: ${hits.join(', ')}`)
  })

  test.each(SEEDS)('seed %i: killed 3 times at random in saves or prunes, resumed: final weights bitwise the uninterrupted run\'s', async (seed) => {
    const random = rng(seed)
    const out = path.join(dir, `seed-${seed}`)
    const draw = (from: number): Moment => {
      const r = random()
      const kind = r < 0.55 ? 'checkpoint' : r < 0.85 ? 'prune' : r < 0.93 ? 'best' : 'final'
      const step = from + 2 + Math.floor(random() * Math.max(1, STEPS - from - 2)) // a checkpoint after the first one of this try
      return { kind, step, delayUs: Math.floor(random() * (kind === 'prune' ? 100 : 3000)) } // a prune lasts well under a millisecond
    }
    let from = 0
    let finished = false
    for (let k = 0; k < KILLS && !finished; k++) {
      const moment = draw(from)
      const run = spawnCli(k === 0 ? args(out) : ['train', '--resume', out])
      const left = await killAt(run, out, moment)
      if (left === null) { // the run ended before the moment came
        expect((await run.exited).code).toBe(0)
        finished = true
        hits.push(`${seed}/${moment.kind}: missed`)
        break
      }
      hits.push(`${seed}/${moment.kind}@${moment.step}+${moment.delayUs}us: ${left.length ? left.map((f) => f.replace(/\d+$/, 'PID').replace(/\.\d+\.tmp$/, '.PID.tmp')).join(' ') : 'nothing left'}`)
      const ckpts = list(path.join(out, 'checkpoints')).filter((f) => /^step-\d+$/.test(f) && fs.existsSync(path.join(out, 'checkpoints', f, 'trainer_state.json')))
      expect(ckpts.length).toBeGreaterThanOrEqual(1) // a complete checkpoint is always there after the first
      from = Math.max(...ckpts.map((f) => Number(f.slice(5))))
    }
    if (!finished) {
      const r = runCli(['train', '--resume', out])
      expect(r.stderr).toBe('')
      expect(r.status).toBe(0)
    }
    const final = (d: string) => fs.readFileSync(path.join(d, 'final', 'model.safetensors'))
    expect(final(out).equals(final(whole))).toBe(true)
    const steps = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)
    expect(steps).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1))
    expect(leftovers(out)).toEqual([])
    expect(list(path.join(out, 'checkpoints'))).toEqual([`step-${STEPS}`])
  })

  test('the kills landed inside saves and prunes: a checkpoint\'s temporary directory, a checkpoint half deleted, left behind', () => {
    expect(hits.some((h) => /checkpoints\/\.step-\d+\.PID\.tmp/.test(h))).toBe(true)
    // a prune is short (well under a millisecond): asked of the kills that saw one begin
    if (hits.some((h) => /\/prune@/.test(h))) expect(hits.some((h) => /\.deleting-PID/.test(h))).toBe(true)
  })
})

test('a directory killed between the two renames of its replacement is renamed back; what is not whole is removed', () => {
  const out = tmp()
  const dead = 4194305 // 2^22 + 1: above Linux's pid_max, never running
  const ckpts = path.join(out, 'checkpoints')
  const make = (rel: string, files: string[]) => {
    fs.mkdirSync(path.join(out, rel), { recursive: true })
    for (const f of files) fs.writeFileSync(path.join(out, rel, f), '{}')
  }
  make(`checkpoints/step-3.old-${dead}`, ['model.safetensors', 'trainer_state.json']) // step-3 renamed away, the new one not in yet
  make(`checkpoints/.step-3.${dead}.tmp`, ['model.safetensors', 'trainer_state.json'])
  make(`final.old-${dead}`, ['config.json', 'model.safetensors']) // the same for final/
  make(`best.old-${dead}`, []) // not a model directory: removed
  make('best', ['config.json'])
  make(`best.old-${dead + 2}`, ['config.json']) // best/ is there: the old one goes
  const removed = new RunDir(out).cleanLeftovers().map((f) => path.relative(out, f)).sort()
  expect(removed).toEqual([`best.old-${dead}`, `best.old-${dead + 2}`, `checkpoints/.step-3.${dead}.tmp`])
  expect(fs.readdirSync(out).sort()).toEqual(['best', 'checkpoints', 'final'])
  expect(fs.readdirSync(ckpts)).toEqual(['step-3'])
  expect(new RunDir(out).checkpoints()).toEqual([{ step: 3, dir: path.join(ckpts, 'step-3') }])
})
