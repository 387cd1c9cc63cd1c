/** plwtune's public API. */
export * from './native'
export * from './model'
export * from './checkpoint'
export * from './safetensors'
export * from './data'
// Both the engine's and the data layer's Batch exist; the data layer's is the superset the trainer uses.
export type { Batch } from './data'
