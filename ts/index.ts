/** plwtune's public API. */
export * from './native'
export * from './model'
export * from './checkpoint'
export * from './safetensors'
