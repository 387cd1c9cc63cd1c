/**
 * The learning rate as a pure function of the step (so a resumed run continues the same
 * curve): linear warmup from 0 over `warmupSteps`, then cosine, linear or constant decay
 * to minLrRatio · lr at `totalSteps`.
 */
export interface Schedule {
  lr: number
  warmupSteps: number
  totalSteps: number
  kind: 'cosine' | 'linear' | 'constant'
  minLrRatio: number
}

/** The rate of optimizer step `step` (0-based). */
export function learningRate(step: number, s: Schedule): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / (s.warmupSteps + 1)
  if (s.kind === 'constant') return s.lr
  const span = Math.max(1, s.totalSteps - s.warmupSteps)
  const progress = Math.min(1, (step - s.warmupSteps) / span)
  const min = s.lr * s.minLrRatio
  const shape = s.kind === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress
  return min + (s.lr - min) * shape
}
