// The command dispatcher and the exit-code policy: a bad case (MoeError) is one line on stderr
// and exit 1, a usage error one line and exit 2, anything else one line and exit 70 (with the
// stack only when MOE_DISTRIBUTE_DEBUG=1). Commands live one per file next to this one.
import { MoeError } from '../core/errors.js';
import { type CliIo, type Command, EXIT_CASE, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, UsageError } from './io.js';
import { runCommand } from './run.js';
import { inspectCommand } from './inspect.js';
import { planCommand } from './plan.js';
import { genCommand } from './gen.js';
import { verifyCommand } from './verify.js';
import { serveCommand } from './serve.js';
import { probeCommand } from './probe.js';

export const COMMANDS: readonly Command[] = [runCommand, inspectCommand, planCommand, genCommand, verifyCommand, serveCommand, probeCommand];

const PROG = 'moe-distribute';

export function toolHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `Usage: ${PROG} <command> [options]

Reproduces torch_npu's MoE distribute ops (npu_moe_distribute_dispatch_setup/_teardown,
npu_moe_distribute_combine_setup/_teardown) bit for bit on the host.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Options:
  -h, --help  show this help; \`${PROG} <command> --help\` shows a command's

Environment:
  MOE_DISTRIBUTE_DEBUG=1  print the stack of an internal error
`;
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();

/** Runs the CLI on `argv` (without node and script) and returns the exit code; never throws. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const args = [...argv];
  let cmdName: string | undefined;
  try {
    const first = args[0];
    if (first === undefined) {
      throw new UsageError(`a command is required; expected one of ${COMMANDS.map((c) => c.name).join(', ')}`);
    }
    if (first === '-h' || first === '--help') {
      io.stdout(toolHelp());
      return EXIT_OK;
    }
    if (first === 'help') {
      const c = COMMANDS.find((x) => x.name === args[1]);
      if (args[1] !== undefined && !c) throw new UsageError(`unknown command ${JSON.stringify(args[1])}`);
      io.stdout(c ? c.help : toolHelp());
      return EXIT_OK;
    }
    if (first.startsWith('-')) throw new UsageError(`unknown option ${first} before the command`);
    const cmd = COMMANDS.find((c) => c.name === first);
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(first)}; expected one of ${COMMANDS.map((c) => c.name).join(', ')}`);
    cmdName = cmd.name;
    return await cmd.run(args.slice(1), io);
  } catch (e) {
    return reportError(e, io, cmdName);
  }
}

/**
 * The exit-code policy, one line on stderr each: usage error → 2, MoeError (a bad case or call) →
 * 1, anything else → 70 (internal; its stack only with MOE_DISTRIBUTE_DEBUG=1).
 */
export function reportError(e: unknown, io: CliIo, cmdName?: string): number {
  if (e instanceof UsageError || isParseArgsError(e)) {
    const hint = `see ${PROG}${cmdName ? ` ${cmdName}` : ''} --help`;
    io.stderr(`${PROG}: ${oneLine((e as Error).message)} (${hint})\n`);
    return EXIT_USAGE;
  }
  if (e instanceof MoeError) {
    io.stderr(`${PROG}: ${oneLine(e.message)}\n`);
    return EXIT_CASE;
  }
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  io.stderr(`${PROG}: internal error: ${oneLine(msg)}\n`);
  if (io.env.MOE_DISTRIBUTE_DEBUG === '1' && e instanceof Error && e.stack) io.stderr(`${e.stack}\n`);
  return EXIT_INTERNAL;
}

function isParseArgsError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}
