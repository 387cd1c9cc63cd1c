/**
 * The shapes (config.json dimensions) of models people fine-tune, for benchmarks, memory
 * planning and tests that need a real-sized model without its weights. Figures from each
 * model's published config.json.
 */
import type { Gpt2ModelConfig } from './gpt2'
import { LlamaModelConfig, llamaConfig } from './llama'

const llama3Rope = { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 }

export const MODEL_SHAPES: Record<string, Gpt2ModelConfig | LlamaModelConfig> = {
  'gpt2': { arch: 'gpt2', nLayer: 12, nHead: 12, nEmbd: 768, nPositions: 1024, vocabSize: 50257 },
  'gpt2-medium': { arch: 'gpt2', nLayer: 24, nHead: 16, nEmbd: 1024, nPositions: 1024, vocabSize: 50257 },
  'SmolLM2-135M': llamaConfig({ vocabSize: 49152, hiddenSize: 576, numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64,
    intermediateSize: 1536, maxPositions: 8192, rmsNormEps: 1e-5, ropeTheta: 100000, tieWordEmbeddings: true }),
  'SmolLM2-360M': llamaConfig({ vocabSize: 49152, hiddenSize: 960, numLayers: 32, numHeads: 15, numKvHeads: 5, headDim: 64,
    intermediateSize: 2560, maxPositions: 8192, rmsNormEps: 1e-5, ropeTheta: 100000, tieWordEmbeddings: true }),
  'Qwen2.5-0.5B': llamaConfig({ family: 'qwen2', vocabSize: 151936, hiddenSize: 896, numLayers: 24, numHeads: 14, numKvHeads: 2,
    headDim: 64, intermediateSize: 4864, maxPositions: 32768, rmsNormEps: 1e-6, ropeTheta: 1e6, tieWordEmbeddings: true }),
  'Qwen3-0.6B': llamaConfig({ family: 'qwen3', vocabSize: 151936, hiddenSize: 1024, numLayers: 28, numHeads: 16, numKvHeads: 8,
    headDim: 128, intermediateSize: 3072, maxPositions: 40960, rmsNormEps: 1e-6, ropeTheta: 1e6, tieWordEmbeddings: true }),
  'Llama-3.2-1B': llamaConfig({ vocabSize: 128256, hiddenSize: 2048, numLayers: 16, numHeads: 32, numKvHeads: 8, headDim: 64,
    intermediateSize: 8192, maxPositions: 131072, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: llama3Rope, tieWordEmbeddings: true }),
  'TinyLlama-1.1B': llamaConfig({ vocabSize: 32000, hiddenSize: 2048, numLayers: 22, numHeads: 32, numKvHeads: 4, headDim: 64,
    intermediateSize: 5632, maxPositions: 2048, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: false }),
  'Llama-3.2-3B': llamaConfig({ vocabSize: 128256, hiddenSize: 3072, numLayers: 28, numHeads: 24, numKvHeads: 8, headDim: 128,
    intermediateSize: 8192, maxPositions: 131072, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: llama3Rope, tieWordEmbeddings: true }),
  'Llama-2-7B': llamaConfig({ vocabSize: 32000, hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128,
    intermediateSize: 11008, maxPositions: 4096, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: false }),
  'Mistral-7B-v0.3': llamaConfig({ family: 'mistral', vocabSize: 32768, hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 8,
    headDim: 128, intermediateSize: 14336, maxPositions: 32768, rmsNormEps: 1e-5, ropeTheta: 1e6, tieWordEmbeddings: false }),
  'Llama-3.1-8B': llamaConfig({ vocabSize: 128256, hiddenSize: 4096, numLayers: 32, numHeads: 32, numKvHeads: 8, headDim: 128,
    intermediateSize: 14336, maxPositions: 131072, rmsNormEps: 1e-5, ropeTheta: 500000,
    ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 }, tieWordEmbeddings: false }),
}
