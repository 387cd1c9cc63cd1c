#!/usr/bin/env node
/**
 * The plwtune command line: `plwtune <command> [flags]` dispatches to ts/commands/<command>.ts
 * (each loaded when used); `plwtune --help` lists the commands, `plwtune <command> --help` gives
 * a command's flags, `plwtune --version` the package's version. docs/cli.md explains the flags.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { CommandIO } from './commands/common'
import { nearest } from './train/config'
import { formatDuration } from './train/progress'

const COMMANDS = `Usage: plwtune <command> [flags]   (plwtune <command> --help for its flags; docs/cli.md)

Commands:
  train          fine-tune a model (full or LoRA) with a prompt loss weight
  generate       answer one prompt or every record of a dataset split (responses JSONL)
  eval           loss, completion loss and perplexity, exact/contains match, multiple choice, an LLM judge
  stats          token counts, completion/prompt ratio and a recommended prompt loss weight
  data swap      turn long-completion records into prompt-prediction tasks (AlpacaDataShort)
  data inspect   the first examples token by token, with each token's kind and loss weight
  sweep          the same training over several prompt loss weights and seeds
  sweep analyze  does λ matter? the study's regression over a table of scores (Holm–Bonferroni corrected)
  merge          a LoRA adapter merged into its base: a plain Hugging Face model directory
  export gguf    a model (and adapter) as one GGUF file for llama.cpp, node-llama-cpp, Ollama
  serve          an OpenAI-compatible HTTP server (completions, chat completions, streaming)
  chat           an interactive chat in the terminal, streaming the answers

Options:
  --help, -h     this list
  --version, -v  plwtune's version
`

/** The version in plwtune's package.json (found upwards from this file: ts/ in the sources, dist/ts/ when built). */
export function version(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json')
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'plwtune' && typeof pkg.version === 'string') return pkg.version
    }
    if (path.dirname(dir) === dir) return 'unknown'
  }
}

export async function main(argv: string[], io: CommandIO = { out: process.stdout, err: process.stderr }): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'train': return (await import('./commands/train')).trainCommand(rest, io)
    case 'generate': return (await import('./commands/generate')).generateCommand(rest, io)
    case 'eval': return (await import('./commands/eval')).evalCommand(rest, io)
    case 'stats': return (await import('./commands/stats')).statsCommand(rest, io)
    case 'sweep':
      if (rest[0] === 'analyze') return (await import('./commands/sweep-analyze')).sweepAnalyzeCommand(rest.slice(1), io)
      return (await import('./commands/sweep')).sweepCommand(rest, io)
    case 'merge': return (await import('./commands/merge')).mergeCommand(rest, io)
    case 'export': return (await import('./commands/export')).exportCommand(rest, io)
    case 'serve': return (await import('./commands/serve')).serveCommand(rest, io)
    case 'chat': return (await import('./commands/chat')).chatCommand(rest, io)
    case 'data':
      if (rest[0] === 'swap') return (await import('./commands/data-swap')).dataSwapCommand(rest.slice(1), io)
      if (rest[0] === 'inspect') return (await import('./commands/data-inspect')).dataInspectCommand(rest.slice(1), io)
      if (rest[0] === '--help' || rest[0] === '-h') {
        io.out.write(COMMANDS.split('\n').filter((l) => l.startsWith('  data ')).join('\n') + '\n')
        return 0
      }
      io.err.write(`plwtune data: expected a subcommand: swap or inspect (plwtune data swap --help)\n`)
      return 2
    case '--version': case '-v': case 'version':
      io.out.write(`${version()}\n`)
      return 0
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    io.out.write(COMMANDS)
    return command === undefined ? 2 : 0
  }
  const near = nearest(command, ['train', 'generate', 'eval', 'stats', 'data', 'sweep', 'merge', 'export', 'serve', 'chat'])
  io.err.write(`plwtune: unknown command ${JSON.stringify(command)} (${near ? `did you mean ${near}? ` : ''}try plwtune --help)\n`)
  return 2
}

if (require.main === module) {
  const t0 = Date.now()
  main(process.argv.slice(2)).then((code) => {
    if (process.argv[2] === 'train' && code === 0 && !process.argv.includes('--help') && !process.argv.includes('-h')) {
      process.stdout.write(`(${formatDuration(Date.now() - t0)} in all)\n`)
    }
    process.exitCode = code
  }, (err: unknown) => {
    process.stderr.write(`plwtune: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  })
}
