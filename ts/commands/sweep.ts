/**
 * `plwtune sweep`: the same training over a grid of prompt loss weights λ × seeds, each run
 * evaluated, then one table and one plot that name the best λ with the spread across seeds.
 *
 *   plwtune sweep [--lambdas 0,0.01,0.05,0.1,0.5,1] [--seeds 1,2] [--metric completion_loss|exact_match]
 *                 [--data A.json [--data B.json …]] [--benchmarks NAME=FILE,… [--shots NAME=K,…]] [--alpha 0.05]
 *                 [--out runs/sweep] [every train flag, passed to each run]
 *
 * The sweep directory (one dataset; with several, each dataset's is OUT/<name>/ and OUT holds
 * sweep.json, results.md, scores.csv, analysis.json and base.json for them all):
 *   sweep.json                 the runs' shared configuration; running again with another one is an error
 *   lambda-<λ>/seed-<s>/       a normal run directory (ts/train/run-dir.ts) plus result.json (with
 *                              the benchmark scores and their change against the base model)
 *   results.md, results.csv    the table (per seed, mean and spread, best marked) and one CSV row per run;
 *                              results.md then the dataset's stats line, the λ × benchmark table with the
 *                              aggregate, and the study's analysis (ts/sweep/study.ts)
 *   sweep.svg                  the metric against λ (ts/sweep/plot.ts)
 *   bench-<name>.svg, aggregate.svg   each benchmark's score and the aggregate against λ (rank scale)
 *   scores.csv, analysis.json  the analysis's rows (dataset,plw,seed,benchmark,score) and its result
 *   base.json                  the base model's (--model) benchmark scores, made once per sweep
 *
 * Decisions a reader would otherwise rediscover:
 * - A run is finished when its result.json exists (written atomically after fit and the test
 *   evaluation). Running the same command again skips finished runs, resumes an interrupted
 *   one from its newest checkpoint with its saved config (the trainer's --resume), and starts
 *   over a run that left no checkpoint. New λ or seeds may be added to a sweep; other
 *   settings may not (sweep.json), except the device.
 * - The metric: `completion_loss` is the best validation completion loss (the test completion
 *   loss when there is no validation split), lower is better; `exact_match` is the exact
 *   match of greedy answers to the test split, higher is better. The default is exact_match
 *   when the runs generate test answers (--generate-eval and --test-split above 0), else
 *   completion_loss. Every run's other metrics are in results.csv either way.
 * - The spread: with 3 or more seeds the sample standard deviation (n − 1), shown mean ± std;
 *   with 2 seeds their min–max (a std of two numbers says little); with 1 none. The best λ's
 *   lead "exceeds the seed spread" when its interval (mean ± std, or min–max) overlaps no
 *   other λ's; the verdict also counts, seed by seed, how often the best beat the runner-up
 *   (the runs of one seed share the data split and initialization, so that comparison is paired).
 * - The seed is the trainer's one seed: the weight initialization, the data order, the
 *   val/test split and, for the built-in demo set, the generated records themselves. The
 *   spread therefore includes data-sampling noise, as it would for a user drawing new splits.
 * - A run whose loss became non-finite is finished too (it would diverge again): it shows as
 *   "diverged" and is left out of the means.
 * - The tables are rewritten after every finished run, so a long sweep can be read while it
 *   runs; an interrupted sweep writes what it has and says how many runs are missing.
 *
 * The work is in ts/sweep/: spec.ts (flags, the grid, sweep.json), summary.ts (per-λ statistics and
 * the verdict), report.ts (results.md, results.csv, sweep.svg), plot.ts (the SVG), run.ts (running
 * the grid). This file is the command.
 */
import { abortOnSigint } from './interrupt'
import * as path from 'node:path'
import { ConfigError } from '../train/config'
import { commandHelp, UsageError } from './flags'
import { parseSweepArgs, SWEEP_FLAGS, SweepSpec } from '../sweep/spec'
import { runSweep, SweepEvent, SweepOutcome } from '../sweep/run'

export { parseSweepArgs }

export function sweepHelp(): string {
  return commandHelp({
    usage: 'plwtune sweep [--lambdas 0,0.01,0.05,0.1,0.5,1] [--seeds 1,2] [--metric completion_loss|exact_match] ' +
      '[--data FILE …] [--benchmarks NAME=FILE,… [--shots NAME=K,…]] [--alpha 0.05] [--out DIR] [train flags]',
    summary: `Trains the same configuration once per prompt loss weight λ and seed, evaluates each run, and writes
OUT/results.md (the metric per seed, mean and spread, the best λ), OUT/results.csv (one row per run)
and OUT/sweep.svg (the metric against λ). Each run is a normal run directory, OUT/lambda-<λ>/seed-<s>/.
With --benchmarks every run's final model (and the base --model, once) is scored on each multiple-choice
benchmark; results.md adds the λ × benchmark table, the aggregate and the study's analysis (does λ matter?
docs/plw-study.md), with OUT/scores.csv, OUT/analysis.json and a plot per benchmark. --data given more than
once runs the grid per dataset (OUT/<name>/) and analyses them together.`,
    table: SWEEP_FLAGS,
    notes: `Every plwtune train flag (and --config FILE) is passed to each run (plwtune train --help), except
--prompt-loss-weight, --seed and --resume, which the sweep sets; without --model and --data the runs use
the demo preset. Running the same command again skips finished runs and resumes an interrupted one;
Ctrl-C stops the current run after its step with a checkpoint (exit status 130).`,
    examples: [
      'plwtune sweep --max-steps 300                   # the demo preset, 6 λ × 2 seeds',
      'plwtune sweep --model gpt2 --data alpaca.json --lambdas 0,0.1,1 --seeds 1,2,3 --test-split 0.05 --generate-eval 200',
      'plwtune sweep --config base.json --metric completion_loss --out runs/sweep-lr',
      'plwtune sweep --model llama --data alpaca.json --data alpaca-short.json --benchmarks arc=arc.jsonl,piqa=piqa.jsonl --out runs/study',
    ],
  })
}

/** `plwtune sweep`: 0 when every run finished, 130 when interrupted, 2 for a usage error, 1 for a failed run. */
export async function sweepCommand(argv: string[], io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream } = { out: process.stdout, err: process.stderr },
  options: { signal?: AbortSignal; onEvent?: (e: SweepEvent) => void } = {}): Promise<number> {
  let spec: SweepSpec | null
  try {
    spec = parseSweepArgs(argv)
  } catch (err) {
    io.err.write(`plwtune sweep: ${(err as Error).message}\n`)
    return 2
  }
  if (spec === null) {
    io.out.write(sweepHelp() + '\n')
    return 0
  }
  const controller = new AbortController()
  if (options.signal?.aborted) controller.abort()
  options.signal?.addEventListener('abort', () => controller.abort(), { once: true })
  const stopListening = abortOnSigint(controller, io.err, 'plwtune sweep')
  const command = ['plwtune sweep', ...argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))].join(' ')
  let outcome: SweepOutcome
  try {
    outcome = await runSweep(spec, { signal: controller.signal, onEvent: options.onEvent, stream: io.out, command })
  } catch (err) {
    io.err.write(`plwtune sweep: ${(err as Error).message}\n`)
    return err instanceof ConfigError || err instanceof UsageError ? 2 : 1
  } finally {
    stopListening()
  }
  const s = outcome.summary
  const lines: string[] = []
  if (outcome.datasets.length === 1) {
    const d = outcome.datasets[0]
    lines.push('', ...(d.statsLine !== null ? [`data (${d.name}): ${d.statsLine}`] : []), ...s.verdict, '',
      `results: ${path.join(spec.out, 'results.md')}, ${path.join(spec.out, 'results.csv')}, plot: ${path.join(spec.out, 'sweep.svg')}`)
  } else {
    for (const d of outcome.datasets) {
      lines.push('', `dataset ${d.name}: ${d.statsLine ?? ''}`, ...d.summary.verdict)
    }
    lines.push('', `results: ${path.join(spec.out, 'results.md')} (each dataset's in ${path.join(spec.out, '<dataset>', 'results.md')})`)
  }
  if (outcome.analysis !== null) {
    lines.push(`the study's analysis (Holm–Bonferroni over ${outcome.analysis.m} p-values at α = ${outcome.analysis.alpha}):`,
      ...outcome.analysis.datasets.map((d) => `  ${d.dataset}: ${d.verdict}`),
      `scores: ${path.join(spec.out, 'scores.csv')}, analysis: ${path.join(spec.out, 'analysis.json')}`)
  }
  io.out.write(lines.join('\n') + '\n')
  const finished = outcome.datasets.reduce((a, d) => a + d.summary.finished, 0)
  const total = spec.datasets.length * s.total
  if (outcome.interrupted) {
    io.out.write(`${finished} of ${total} runs finished; run the same command again to continue\n`)
    return 130
  }
  return 0
}

