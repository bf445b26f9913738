// Lint with Nx module boundaries on two axes: scope (which deployable a lib serves) and type
// (what kind of code it is). Pure libs may not import Nest or the broker client; only the Kafka
// lib imports kafkajs; nothing imports an app. Zero warnings allowed (`--max-warnings 0`).
const nx = require('@nx/eslint-plugin');
const tseslint = require('typescript-eslint');

const ALWAYS_BANNED_OUTSIDE_BROKER = ['kafkajs'];

/** Nx module boundaries; test files may also use the test helpers lib (type:testing). */
function boundaries(allowTesting) {
  const withTesting = (tags) => (allowTesting ? [...tags, 'type:testing'] : tags);
  const constraints = [
    { sourceTag: 'scope:shared', onlyDependOnLibsWithTags: ['scope:shared'] },
    { sourceTag: 'scope:ingest', onlyDependOnLibsWithTags: ['scope:shared', 'scope:ingest'] },
    { sourceTag: 'scope:preprocess', onlyDependOnLibsWithTags: ['scope:shared', 'scope:preprocess'] },
    { sourceTag: 'scope:inference', onlyDependOnLibsWithTags: ['scope:shared', 'scope:inference'] },
    { sourceTag: 'scope:results', onlyDependOnLibsWithTags: ['scope:shared', 'scope:results'] },
    {
      sourceTag: 'type:app',
      onlyDependOnLibsWithTags: ['type:platform', 'type:broker', 'type:util', 'type:contracts'],
      bannedExternalImports: [...ALWAYS_BANNED_OUTSIDE_BROKER, 'onnxruntime-node', 'sharp'],
    },
    {
      sourceTag: 'type:broker',
      onlyDependOnLibsWithTags: ['type:platform', 'type:util', 'type:contracts'],
    },
    {
      sourceTag: 'type:platform',
      onlyDependOnLibsWithTags: ['type:platform', 'type:util', 'type:contracts'],
      bannedExternalImports: ALWAYS_BANNED_OUTSIDE_BROKER,
    },
    {
      sourceTag: 'type:util',
      onlyDependOnLibsWithTags: ['type:util', 'type:contracts'],
      bannedExternalImports: [...ALWAYS_BANNED_OUTSIDE_BROKER, '@nestjs/*', 'express'],
    },
    {
      sourceTag: 'type:contracts',
      onlyDependOnLibsWithTags: ['type:contracts'],
      bannedExternalImports: [...ALWAYS_BANNED_OUTSIDE_BROKER, '@nestjs/*', 'express', 'sharp', 'onnxruntime-node'],
    },
    {
      sourceTag: 'type:testing',
      onlyDependOnLibsWithTags: ['type:util', 'type:contracts'],
      bannedExternalImports: ['@nestjs/*'],
    },
    {
      // Benchmarks and developer tools drive the system like a client and may use pure libs.
      sourceTag: 'type:tool',
      onlyDependOnLibsWithTags: ['type:testing', 'type:util', 'type:contracts'],
    },
    {
      sourceTag: 'type:e2e',
      onlyDependOnLibsWithTags: ['type:testing', 'type:contracts'],
      bannedExternalImports: ['@nestjs/*'],
    },
  ];
  return {
    enforceBuildableLibDependency: false,
    allow: [],
    depConstraints: constraints.map((c) =>
      c.onlyDependOnLibsWithTags && c.sourceTag.startsWith('type:')
        ? { ...c, onlyDependOnLibsWithTags: withTesting(c.onlyDependOnLibsWithTags) }
        : c,
    ),
  };
}

module.exports = [
  { ignores: ['**/dist/**', '**/node_modules/**', '**/.venv/**', '**/generated/**', '.cache/**', '.tools/**', 'coverage/**', 'apps/trainer/**'] },
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  {
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser },
    rules: {
      '@nx/enforce-module-boundaries': ['error', boundaries(false)],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-console': 'error',
    },
  },
  {
    // Tests may use the test helpers lib and assert on values they just checked.
    files: ['**/*.spec.ts', '**/*.integration-spec.ts', '**/*.e2e-spec.ts'],
    rules: {
      '@nx/enforce-module-boundaries': ['error', boundaries(true)],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: { globals: { require: 'readonly', module: 'writable', __dirname: 'readonly', console: 'readonly', process: 'readonly' } },
  },
];
