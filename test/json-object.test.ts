/**
 * readJsonObject (ts/json-keys.ts), the one reader of plwtune's own JSON objects (run and sweep
 * configurations, trainer state, training records): each way a file can be unusable is named,
 * with the file, what it is, and the caller's note on how a file gets damaged.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { readJsonObject } from '../ts/json-keys'
import { tmp } from './commands/tiny-model'

class CustomError extends Error {}

describe('readJsonObject', () => {
  const dir = tmp('json-object-')
  const write = (name: string, text: string): string => {
    const file = path.join(dir, name)
    fs.writeFileSync(file, text)
    return file
  }
  const make = (m: string): Error => new CustomError(m)
  const note = 'the file is damaged'

  test('an object is returned as parsed', () => {
    expect(readJsonObject(write('ok.json', '{"a": [1, {"b": null}]}'), 'thing')).toEqual({ a: [1, { b: null }] })
  })

  test('a missing file names the file, what it is, and the system error code', () => {
    const file = path.join(dir, 'none.json')
    expect(() => readJsonObject(file, 'trainer state', make, note)).toThrow(CustomError)
    expect(() => readJsonObject(file, 'trainer state', make, note)).toThrow(`${file}: cannot read the trainer state (ENOENT)`)
  })

  test.each([
    ['empty.json', '  \n', 'is empty'],
    ['cut.json', '{"step": 12, "lo', 'is not valid JSON ('],
    ['array.json', '[1, 2]', 'is not a JSON object'],
    ['number.json', '7', 'is not a JSON object'],
  ])('%s: the message says why and carries the note', (name, text, why) => {
    const file = write(name, text)
    let message = ''
    try {
      readJsonObject(file, 'trainer state', make, note)
    } catch (err) {
      expect(err).toBeInstanceOf(CustomError)
      message = (err as Error).message
    }
    expect(message.startsWith(`${file}: the trainer state ${why}`)).toBe(true)
    expect(message.endsWith(`: ${note}`)).toBe(true)
  })

  test('without a note the message ends at the reason', () => {
    const file = write('empty2.json', '')
    expect(() => readJsonObject(file, 'sweep file')).toThrow(new Error(`${file}: the sweep file is empty`))
  })

  test('a forbidden key anywhere is refused, naming its path', () => {
    const file = write('proto.json', '{"init": {"list": [{"__proto__": {"x": 1}}]}}')
    expect(() => readJsonObject(file, 'config', make)).toThrow(`${file}: key "init.list[0].__proto__" is not allowed`)
  })
})
