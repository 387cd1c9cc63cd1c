#!/usr/bin/env node
// `npm run train`: until the trainer lands (the pipeline issue), this shows what the native
// core can already do on this machine and what the command will run.
'use strict'
const path = require('node:path')

let info
try {
  info = require(path.join(__dirname, '..', 'dist', 'ts', 'native.js')).backendInfo()
} catch (err) {
  console.error(`plwtune: ${err.message}`)
  process.exit(1)
}
const cuda = info.cuda.available ? `available (${info.cuda.device})` : `unavailable (${info.cuda.reason})`
console.log(`plwtune native core: cpu ${info.cpu.threads} threads (${info.cpu.simd}), cuda ${cuda}`)
console.log(`
The trainer is not built yet. When it is, \`npm run train\` with no arguments will:
  1. generate the built-in instruction set (arithmetic, reversal, sorting, ...) with val/test splits;
  2. build a byte-level tokenizer and a small GPT-2 (random init) on ${info.cuda.available ? 'cuda' : 'cpu'};
  3. fine-tune it with prompt loss weight 0.1, printing loss, completion loss, lr and tokens/s;
  4. print sample generations and the test exact-match accuracy.
With arguments: npm run train -- --model ./gpt2 --data alpaca.json --prompt-loss-weight 0.1 --out runs/a

Available today: the loss kernels, the fused LM head, embeddings and AdamW on cpu${info.cuda.available ? ' and cuda' : ''}
(see README.md), \`npm test\` and \`npm run bench\`.`)
