// The process entry of the CLI (bundled to dist/cli.js, imported by bin/moe-distribute.js):
// runs the dispatcher in cli.ts and exits with its code once stdout and stderr are flushed.
import { interruptCleanup } from '../io/files.js';
import { main } from './cli.js';

const flush = (s: NodeJS.WriteStream): Promise<void> => new Promise((resolve) => s.write('', () => resolve()));

// Last resort for errors outside main's try (a worker, a stray rejection): one line, exit 70.
const internal = (e: unknown): void => {
  process.stderr.write(`moe-distribute: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
  if (process.env.MOE_DISTRIBUTE_DEBUG === '1' && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  process.exit(70);
};
process.on('uncaughtException', internal);
// An interrupted command removes its temporaries (and puts back earlier outputs it had moved aside),
// then exits with the conventional code, 128 + the signal's number.
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.on(sig, () => {
    interruptCleanup();
    process.stderr.write(`moe-distribute: interrupted (${sig}); temporaries removed, earlier outputs kept\n`);
    process.exit(code);
  });
}
process.on('unhandledRejection', internal);

const code = await main(process.argv.slice(2), {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
  env: process.env,
  stderrIsTTY: process.stderr.isTTY === true,
});
await Promise.all([flush(process.stdout), flush(process.stderr)]);
process.exit(code);
