/** A missing native build is reported with the command that fixes it. */
test('loading without a built addon says how to build it', () => {
  jest.isolateModules(() => {
    jest.doMock('node:fs', () => ({ ...jest.requireActual('node:fs'), existsSync: () => false }))
    expect(() => require('../ts/native')).toThrow(/native addon is not built[\s\S]*npm run build:native[\s\S]*docs\/building.md/)
  })
})
