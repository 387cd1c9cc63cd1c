/** Jest runs the TypeScript suites in test/ through ts-jest (type errors are caught by the
 *  `tsc --noEmit` that `npm test` runs first, so ts-jest only transpiles: isolatedModules in tsconfig.json). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] },
  testTimeout: 120000,
}
