/** The data layer: read → split → template → tokenize → encode (+ truncate) → batch. See docs/data.md. */
export { type Source, type Problem, DataError, TemplateError, formatSource, formatProblem, PROBLEMS_SHOWN } from './errors'
export {
  type DataFormat, DATA_FORMATS, type Role, type ChatMessage, type AlpacaRecord, type PromptCompletionRecord,
  type ChatRecord, type DataRecord, detectFormat, validateRecord, toMessages, textFields,
} from './records'
export {
  type ReadOptions, type ReadSummary, type ReadResult, type JsonSink, readDataset, readJsonValues, recordsFromObjects, describeRead,
  MAX_PROBLEMS_KEPT,
} from './read'
export {
  type ChoiceRecord, type ChoiceReadSummary, isChoiceObject, isChoiceFile, validateChoiceRecord, readChoiceDataset,
  choiceRecordsFromObjects, codePoints,
} from './choices'
export { type SplitOptions, type Splits, splitDataset } from './split'
export { Rng, hashSeed, permutation, shuffleInPlace } from './rng'
export { type DataWarning, type WarningGroup, Warnings, formatWarning } from './warnings'
export {
  type Segment, type SegmentKind, type Rendered, type Marker, type Template, generationPrompt, renderText,
} from './template'
export {
  ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT, COMPLETION_DEFAULTS, type AlpacaOptions, type CompletionOptions,
  type CustomOptions, alpacaTemplate, completionTemplate, customTemplate, phi3Template, chatmlTemplate,
} from './templates'
export { type ChatTemplateOptions, jinjaChatTemplate, chatTemplateSource, specialTokenVariables } from './chat-template'
export { TEMPLATE_NAMES, type TemplateName, type ResolveTemplateOptions, resolveTemplate } from './resolve-template'
export { type Tokenizer, ByteTokenizer, BYTE_SPECIAL_TOKENS } from './tokenizer'
export { HfTokenizer, type HfTokenizerFiles } from './hf-tokenizer'
export { type EncodedExample, KIND_PAD, KIND_PROMPT, KIND_COMPLETION, tokenWeight } from './example'
export { type TruncateResult, truncateExample } from './truncate'
export {
  type EncodeOptions, type EncodeStats, type EncodeResult, encodeTexts, encodeRecord, encodeDataset, checkMarkers, describeEncode,
} from './encode'
export { type Batch, type CollateOptions, PAD_TARGET, collate, packRows } from './batch'
export { type LoaderOptions, type StepPosition, type Step, BatchLoader } from './loader'
export {
  type LengthVerdict, type RecordTokenCounts, type FieldStats, type DatasetStats, SHORT_COMPLETION_RATIO, SHORT_COMPLETION_PLW, BORDERLINE_FACTOR,
  LONG_COMPLETION_PLW, recordTokenCounts, fieldStats, plwAdvice, datasetStats,
} from './stats'
export { SWAP_INSTRUCTION, SWAP_INSTRUCTION_WITH_CONTEXT, completionLongerThanPrompt, swapRecord, swapLongCompletions } from './swap'
