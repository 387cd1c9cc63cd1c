/** plwtune's public API. */
export * from './native'
export * from './model'
export { GenerationStream, type StreamPiece, type StreamResult, type StreamStopReason, type StreamTextOptions } from './generate-stream'
export * from './checkpoint'
export {
  type ModelConfig, type Gpt2ModelConfig, type LlamaModelConfig, type LlamaFamily, type Llama3RopeScaling, llamaConfig,
  configFromHf, configToHf, maxPositions, describeConfig, SUPPORTED_ARCHITECTURES,
} from './arch'
export { MODEL_SHAPES } from './arch/shapes'
export * from './safetensors'
export { WriteError, type SaveInfo } from './atomic-write'
export * from './data'
// Both the engine's and the data layer's Batch exist; the data layer's is the superset the trainer uses.
export type { Batch } from './data'
export { Trainer, type TrainResult, type StepMetrics, type StopReason } from './train/trainer'
export { resolveConfig, DEFAULTS, DEMO, ConfigError, type TrainConfig } from './train/config'
export { evaluateLoss, type SplitLoss } from './train/evaluate'
export {
  generateAnswers, generateOne, generateMany, recordRequest, finishResponse, cutAtStop, type Answer, type Generated, type GenerationOptions,
} from './eval/generation'
export { exactMatch, containsMatch, matchRates, type MatchRates } from './eval/match'
export { encodePair, choiceRequests, scoreChoices, type ChoiceScore, type ChoiceResult } from './eval/choices'
export { generateDemoRecords } from './demo/tasks'
export { loadTokenizer } from './model-dir'
export { startServer, type ServerOptions, type RunningServer, type ServedModel } from './serve/server'
export { exportGguf, type ExportGgufOptions } from './export/export-gguf'
