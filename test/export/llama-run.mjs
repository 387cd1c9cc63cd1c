// Runs a GGUF file in node-llama-cpp (a client we did not write) and prints what it computes, as JSON:
// the greedy continuation of each prompt (token ids in, token ids out), and the tokenization and
// detokenization of texts, and chat answers through node-llama-cpp's LlamaChatSession. Spawned by test/export/*.test.ts (node-llama-cpp is ESM only).
// Usage: node test/export/llama-run.mjs REQUEST.json
//   REQUEST: { jobs: [{ file, prompts: number[][], maxTokens, texts?: string[], chat?: string[], contextSize? }] } → one result per job
import * as fs from 'node:fs'
import { getLlama, LlamaChatSession, LlamaLogLevel } from 'node-llama-cpp'

const { jobs } = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false })
const results = []
for (const req of jobs) {
  const model = await llama.loadModel({ modelPath: req.file })
  // one thread: the suites run on small machines, where llama.cpp's spinning threads fight jest's
  const context = await model.createContext({ contextSize: req.contextSize ?? 64, sequences: 1, threads: 1 })
  const sequence = context.getSequence()
  const continuations = []
  for (const prompt of req.prompts) {
    await sequence.clearHistory()
    const out = []
    if (req.maxTokens > 0) {
      // temperature 0: greedy; the generator ends by itself at an end-of-generation token (not yielded)
      for await (const token of sequence.evaluate(prompt, { temperature: 0 })) {
        out.push(token)
        if (out.length >= req.maxTokens) break
      }
    }
    continuations.push(out)
  }
  // chat through node-llama-cpp's own session: the file's chat template (tokenizer.chat_template), greedy
  const chats = []
  for (const message of req.chat ?? []) {
    await sequence.clearHistory()
    const session = new LlamaChatSession({ contextSequence: sequence, autoDisposeSequence: false })
    chats.push({ wrapper: session.chatWrapper.wrapperName ?? null, answer: await session.prompt(message, { temperature: 0, maxTokens: req.maxTokens }) })
    session.dispose()
  }
  const tokenized = (req.texts ?? []).map((t) => Array.from(model.tokenize(t)))
  const detokenized = tokenized.map((ids) => model.detokenize(ids))
  const meta = model.fileInfo.metadata
  const info = { bos: model.tokens.bos, eos: model.tokens.eos, trainContextSize: model.trainContextSize,
    chatTemplate: meta?.tokenizer?.chat_template ?? null, architecture: meta?.general?.architecture ?? null }
  results.push({ continuations, tokenized, detokenized, chats, info })
  await context.dispose()
  await model.dispose()
}
console.log(JSON.stringify(results))
await llama.dispose()
