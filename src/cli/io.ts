// What a command sees of the process: its output streams and environment, so that the CLI can
// run in-process (tests) as well as in a real process (bin/moe-distribute.js).
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Record<string, string | undefined>;
  /** whether stderr is a terminal (progress bars are drawn only then); absent: no */
  stderrIsTTY?: boolean;
  /** a clock in ms for progress bars (tests); absent: performance.now */
  now?: () => number;
}

/** A wrong command line: one line on stderr and exit code 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** the command whose --help explains the fix, if any */
    readonly command?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Command {
  name: string;
  /** one line for the tool's help */
  summary: string;
  /** `moe-distribute <command> --help` */
  help: string;
  /** returns the exit code; throws UsageError, MoeError or anything else */
  run(argv: string[], io: CliIo): Promise<number>;
}

export const EXIT_OK = 0;
export const EXIT_CASE = 1;
export const EXIT_USAGE = 2;
/** EX_SOFTWARE (sysexits.h): an internal error */
export const EXIT_INTERNAL = 70;

/**
 * The value of a numeric flag: a finite number, an integer when `integer`, at least `min` when
 * given; otherwise one usage error naming the flag, the value and the rule. An integer must be
 * exact as a double (at most 2^53 - 1 in magnitude): past that Number() rounds, and the flag
 * would silently mean another number.
 */
export function numberFlag(command: string, name: string, v: string, o: { integer?: boolean; min?: number } = {}): number {
  const n = Number(v);
  if (o.integer && /^\s*-?\d+\s*$/.test(v) && !Number.isSafeInteger(n)) {
    throw new UsageError(
      `--${name} should be an integer of at most 2^53 - 1 = ${Number.MAX_SAFE_INTEGER} in magnitude (larger ones are not exact), got ${JSON.stringify(v)}`,
      command,
    );
  }
  const ok = v.trim() !== '' && Number.isFinite(n) && (!o.integer || /^\s*-?\d+\s*$/.test(v)) && (o.min === undefined || n >= o.min);
  if (!ok) {
    const what = `${o.min === 0 ? 'non-negative ' : o.min !== undefined ? `>= ${o.min} ` : ''}${o.integer ? 'integer' : 'number'}`;
    throw new UsageError(`--${name} should be ${/^[aeiou]/.test(what) ? 'an' : 'a'} ${what}, got ${JSON.stringify(v)}`, command);
  }
  return n;
}
