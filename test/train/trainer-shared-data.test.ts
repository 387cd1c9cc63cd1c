/**
 * The trainer given another run's prepared data (a sweep reads and tokenizes each dataset once):
 * bitwise the run that reads the data itself, and refused (read anew) when a setting differs.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { StepMetrics, Trainer } from '../../ts/train/trainer'
import { tinyTrainConfig as config } from '../support/train-config'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-shared-'))
const metrics = (dir: string) => fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')
  .map((l) => JSON.parse(l) as StepMetrics).map((m) => [m.step, m.loss, m.grad_norm, m.lr, m.val_loss, m.val_completion_loss])

describe('Trainer with shared data', () => {
  test('a run given an earlier run\'s data is bitwise the run that reads it itself', async () => {
    const first = new Trainer(config({ out: path.join(tmp(), 'a'), maxSteps: 6, promptLossWeight: 1, seed: 1 }))
    await first.fit()
    const data = first.prepared
    expect(data).not.toBeNull()

    const own = path.join(tmp(), 'own'), shared = path.join(tmp(), 'shared')
    const a = await new Trainer(config({ out: own, maxSteps: 6, promptLossWeight: 0.1, seed: 2 })).fit()
    const logs: string[] = []
    const t = new Trainer(config({ out: shared, maxSteps: 6, promptLossWeight: 0.1, seed: 2 }), { data })
    t.on('log', (l: string) => logs.push(l))
    const b = await t.fit()
    expect(logs.some((l) => l.startsWith('data: shared with an earlier run'))).toBe(true)
    expect(logs.some((l) => l.startsWith('data: the built-in demo set'))).toBe(false)
    expect(t.prepared?.meta.promptLossWeight).toBe(0.1) // the run's own λ in its model directory's meta
    expect(metrics(shared)).toEqual(metrics(own))
    expect([b.bestValCompletionLoss, b.test?.loss?.completionLoss]).toEqual([a.bestValCompletionLoss, a.test?.loss?.completionLoss])
    for (const f of ['final/model.safetensors', 'final/plwtune.json']) {
      expect({ f, same: fs.readFileSync(path.join(shared, f)).equals(fs.readFileSync(path.join(own, f))) }).toEqual({ f, same: true })
    }
  })

  test('data prepared with other settings is not used: the trainer reads its own', async () => {
    const first = new Trainer(config({ out: path.join(tmp(), 'a'), maxSteps: 2 }))
    await first.fit()
    const logs: string[] = []
    const t = new Trainer(config({ out: path.join(tmp(), 'b'), maxSteps: 2, dataSeed: 7 }), { data: first.prepared })
    t.on('log', (l: string) => logs.push(l))
    await t.fit()
    expect(logs.some((l) => l.startsWith('data: shared'))).toBe(false)
    expect(logs.some((l) => l.startsWith('data: the built-in demo set'))).toBe(true)
  })
})
