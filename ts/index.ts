/** plwtune's public API. */
export * from './native'
export * from './model'
