/** plwtune's public API. */
export * from './native'
export * from './model'
export * from './checkpoint'
export * from './safetensors'
export * from './data'
// Both the engine's and the data layer's Batch exist; the data layer's is the superset the trainer uses.
export type { Batch } from './data'
export { Trainer, type TrainResult, type StepMetrics, type StopReason } from './train/trainer'
export { resolveConfig, DEFAULTS, DEMO, ConfigError, type TrainConfig } from './train/config'
export { evaluateLoss, generateAnswers, type SplitLoss, type Answer } from './train/evaluate'
export { generateDemoRecords } from './demo/tasks'
