/**
 * PGlite loads parts of itself with dynamic import(), which Jest's CommonJS sandbox refuses
 * unless Node runs with --experimental-vm-modules. Tests that open the embedded store load PGlite
 * with Node's own module loader instead, outside the sandbox:
 *
 *   jest.mock('@electric-sql/pglite', () => require('../testing/pglite-in-jest').pgliteFromNodeLoader(__filename));
 *
 * Values then come from Node's realm: compare them structurally, not with instanceof.
 * Remove this once the integration project runs with --experimental-vm-modules.
 */
export function pgliteFromNodeLoader(fromFile: string): unknown {
  // Jest injects the host's Buffer, so its constructor is the host realm's Function; code made
  // with it sees the real process, whose module loader Jest does not intercept.
  const HostFunction = Buffer.constructor as FunctionConstructor;
  const hostProcess = new HostFunction('return process')() as NodeJS.Process;
  return hostProcess.getBuiltinModule('node:module').createRequire(fromFile)('@electric-sql/pglite');
}
