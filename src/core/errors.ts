// One error type for every rejected input: a stable code, the parameter, the value and the rule.
export type ErrorCode =
  | 'E_ATTR' // an attribute outside its documented range
  | 'E_SHAPE' // a tensor whose shape is not the contract's
  | 'E_DTYPE' // a tensor of the wrong dtype
  | 'E_VALUE' // a tensor value that breaks a rule (expert id out of range, mask not a prefix, ...)
  | 'E_BUFFER' // HCCL_BUFFSIZE too small for the configuration
  | 'E_MEMORY' // the simulation itself cannot hold the round (wasm32 4 GiB limit)
  | 'E_MISMATCH' // attributes that differ between ranks or ops
  | 'E_ORDER' // an op called out of the dispatch -> combine sequence
  | 'E_MISSING' // a teardown whose senders' status never arrived
  | 'E_ABORTED' // another rank of the group failed (threw, or its worker died)
  | 'E_CASE'; // a case directory or tensor file that cannot be used

export class MoeError extends Error {
  readonly code: ErrorCode;
  readonly param: string;
  readonly value: unknown;
  readonly rule: string;

  constructor(code: ErrorCode, param: string, value: unknown, rule: string, detail?: string) {
    super(`${param} = ${formatValue(value)}: ${rule}${detail ? ` (${detail})` : ''}`);
    this.name = 'MoeError';
    this.code = code;
    this.param = param;
    this.value = value;
    this.rule = rule;
  }
}

/** Prefixes a MoeError's message with where it happened (same code, param, value and rule). */
export function withContext(err: MoeError, where: string): MoeError {
  const out = new MoeError(err.code, err.param, err.value, err.rule);
  out.message = `${where}: ${err.message}`;
  return out;
}

/**
 * Nesting shown by formatValue: values come from files (a case.json of 5000 nested arrays is
 * valid JSON), and formatting them in full recursed past the stack (a RangeError, not a MoeError).
 */
const FORMAT_DEPTH = 8;

export function formatValue(v: unknown, depth = 0): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return depth >= FORMAT_DEPTH ? '[...]' : `[${v.map((x) => formatValue(x, depth + 1)).join(', ')}]`;
  if (typeof v === 'bigint') return v.toString();
  if (v === undefined) return 'undefined';
  if (v !== null && typeof v === 'object') {
    try {
      return JSON.stringify(v);
    } catch {
      return '{...}'; // nested too deep for JSON.stringify (or cyclic)
    }
  }
  return String(v);
}
