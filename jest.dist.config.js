/** Jest over the compiled tests in dist/test (no TypeScript at run time): for the GPU machine,
 *  where only a minimal node_modules travels (scripts/gpu/run.sh). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  transform: {},
  testTimeout: 300000,
}
