/**
 * The trainer suites' tiny run: the demo set on a 1-layer, 16-channel byte-level GPT-2 (CPU,
 * about a second a run); `values` override it.
 */
import { DEMO_TEMPLATE } from '../../ts/demo/tasks'
import { resolveConfig, TrainConfig } from '../../ts/train/config'

export function tinyTrainConfig(values: Partial<TrainConfig>): TrainConfig {
  return resolveConfig({ source: 'test', values: {
    device: 'cpu', template: DEMO_TEMPLATE, demoRecords: 240, init: { nLayer: 1, nHead: 2, nEmbd: 16, nPositions: 64 },
    batchSize: 8, lr: 3e-3, warmupSteps: 2, valSplit: 0.1, testSplit: 0.1, evalEvery: 3, maxLength: 64, seed: 3,
    ...values,
  } as Record<string, unknown> })
}
