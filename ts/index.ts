/** plwtune's public API. */
export * from './native'
