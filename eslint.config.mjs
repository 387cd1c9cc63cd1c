// ESLint (flat config) for plwtune: eslint's and typescript-eslint's recommended rules, a few
// adjustments for this codebase, no style rules (the code's layout is the author's: STYLE.md).
// `npm run lint`; `npm test` runs it between tsc and jest.
import { defineConfig } from 'eslint/config'
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/** Node's globals, for the few plain JavaScript files (jest configs, scripts, test helpers); TypeScript checks the rest. */
const readonly = (names) => Object.fromEntries(names.map((name) => [name, 'readonly']))
const NODE_GLOBALS = readonly(['process', 'console', 'Buffer', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval',
  'setImmediate', 'URL', 'TextDecoder', 'TextEncoder', 'AbortController', 'performance'])
const COMMONJS_GLOBALS = { ...NODE_GLOBALS, ...readonly(['require', 'module', 'exports', '__dirname', '__filename']) }

export default defineConfig(
  {
    ignores: ['dist/', 'build/', 'node_modules/', 'coverage/', 'runs/', '.device/', '.gpu/', '**/*.d.ts'],
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // `_` marks an argument or binding kept for its position; a caught error may go unused.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Terminal output (ANSI escapes in progress bars, colours, the chat REPL and their tests) and
      // text sanitizers (control characters out of SVG and logs) match control characters on purpose.
      'no-control-regex': 'off',
      // Style: tests match aligned columns with the spaces they expect.
      'no-regex-spaces': 'off',
    },
  },
  {
    // jest's module registry: jest.doMock and friends need the module required after them, and
    // the plain-.js helpers (test/emulator/build.js) have no types to import.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: COMMONJS_GLOBALS },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: NODE_GLOBALS },
  },
)
