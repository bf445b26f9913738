import { runCli } from './program';

// The `thorax` operator CLI (docs/cli.md); reached through the image's entry point and `npx thorax`.
const stopSignal = new Promise<void>((resolve) => {
  process.once('SIGINT', () => resolve());
  process.once('SIGTERM', () => resolve());
});

void runCli(process.argv, { env: process.env, stopSignal }).then((code) => {
  // kafkajs may keep timers alive for a moment after disconnecting.
  process.exitCode = code;
  setTimeout(() => process.exit(code), 200).unref();
});
