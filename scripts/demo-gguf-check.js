#!/usr/bin/env node
// Exports the demo's final model (runs/demo/final, from `npm run train`) to GGUF at f32, f16 and
// q8_0, then compares node-llama-cpp's greedy continuations of 30 demo prompts with plwtune's own
// `generate`, token for token. Needs `npm run build:ts` and the devDependencies.
// Usage: node scripts/demo-gguf-check.js [RUN_FINAL_DIR]
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { execFileSync } = require('node:child_process')
const root = path.join(__dirname, '..')
const { loadModel } = require(path.join(root, 'dist/ts/model'))
const { loadTokenizer } = require(path.join(root, 'dist/ts/model-dir'))
const { generateDemoRecords } = require(path.join(root, 'dist/ts/demo/tasks'))
const { recordsFromObjects } = require(path.join(root, 'dist/ts/data'))
const { resolveTemplate } = require(path.join(root, 'dist/ts/data/resolve-template'))
const { recordRequest } = require(path.join(root, 'dist/ts/eval/generation'))

async function main() {
  const dir = process.argv[2] ?? path.join(root, 'runs/demo/final')
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-demo-gguf-'))
  const dtypes = ['f32', 'f16', 'q8_0']
  for (const d of dtypes) {
    execFileSync(process.execPath, [path.join(root, 'dist/ts/cli.js'), 'export', 'gguf', '--model', dir, '--out', path.join(tmp, `${d}.gguf`),
      '--dtype', d], { stdio: 'inherit' })
  }
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'plwtune.json'), 'utf8'))
  const tokenizer = await loadTokenizer(dir)
  const template = resolveTemplate(meta.template)
  const model = await loadModel(dir)
  const prompts = []
  const ours = []
  for (const record of recordsFromObjects(generateDemoRecords(30, 12345)).records) {
    const request = recordRequest(template, tokenizer, record)
    prompts.push(request.ids)
    ours.push((await model.generate(request.ids, { maxNewTokens: 24, stopIds: [tokenizer.eosId] })).tokens)
  }
  model.dispose()
  const jobs = dtypes.map((d) => ({ file: path.join(tmp, `${d}.gguf`), prompts, maxTokens: 24, contextSize: 256 }))
  fs.writeFileSync(path.join(tmp, 'request.json'), JSON.stringify({ jobs }))
  const theirs = JSON.parse(execFileSync(process.execPath, [path.join(root, 'test/export/llama-run.mjs'), path.join(tmp, 'request.json')],
    { encoding: 'utf8', maxBuffer: 1 << 26 }))
  dtypes.forEach((d, j) => {
    const same = theirs[j].continuations.filter((c, i) => JSON.stringify(c) === JSON.stringify(ours[i])).length
    console.log(`${d}: node-llama-cpp's greedy continuation identical to plwtune's for ${same}/${ours.length} prompts`)
  })
  fs.rmSync(tmp, { recursive: true, force: true })
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
