import type { INestApplication } from '@nestjs/common';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { migrate } from '../store/migrations';
import { PgliteSqlClient } from '../store/pglite-sql-client';
import type { SqlClient } from '../store/sql-client';
import { sqlResultsStore } from '../store/sql-results-store';
import { startResultsHttp } from '../testing/results-http-app';

jest.setTimeout(120_000);

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');

interface LintProblem {
  ruleId: string;
  severity: 'error' | 'warn';
  message: string;
  location: Array<{ pointer: string }>;
}

/**
 * The OpenAPI document the running service serves at /openapi.json passes Redocly's recommended
 * rules with no error and no warning (Redocly CLI, offline: telemetry and update checks off).
 */
describe('GET /openapi.json under Redocly lint --extends=recommended', () => {
  let db: SqlClient;
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    db = await PgliteSqlClient.open('memory://');
    await migrate(db);
    ({ app, url } = await startResultsHttp(sqlResultsStore(db)));
  });

  afterAll(async () => {
    await app?.close();
    await db?.close();
  });

  it('has no problems', async () => {
    const document = await (await fetch(`${url}/openapi.json`)).json();
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'thorax-openapi-')), 'openapi.json');
    writeFileSync(file, JSON.stringify(document, null, 2));
    const cli = path.join(ROOT, 'node_modules', '@redocly', 'cli', 'bin', 'cli.js');
    const { NODE_OPTIONS: _nodeOptions, ...env } = process.env;
    let stdout: string;
    try {
      ({ stdout } = await promisify(execFile)(process.execPath, [cli, 'lint', '--extends=recommended', '--format=json', '--lint-config=off', file], {
        cwd: path.dirname(file),
        env: { ...env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', CI: 'true' },
        maxBuffer: 16 * 1024 * 1024,
      }));
    } catch (error) {
      // Exit status 1 when an error-level rule fails; the report is on stdout all the same.
      stdout = (error as { stdout?: string }).stdout ?? '';
      if (!stdout) throw error;
    }
    const report = JSON.parse(stdout) as { totals: { errors: number; warnings: number }; problems: LintProblem[] };
    const problems = report.problems.map((p) => `${p.severity} ${p.ruleId} ${p.location[0]?.pointer ?? ''}: ${p.message}`);
    expect(problems).toEqual([]);
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  });
});
