// `moe-distribute probe --out DIR`: on an Ascend host, runs the probe's fixed cases through the npu
// backend against the reference and writes report.md and report.json (src/probe/).
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PROBE_CASES, caseRanks } from '../probe/cases.js';
import { reportMarkdown } from '../probe/report.js';
import { runProbe } from '../probe/run.js';
import { type CliIo, type Command, EXIT_CASE, EXIT_OK, EXIT_USAGE, UsageError, numberFlag } from './io.js';

const HELP = `Usage: moe-distribute probe --out DIR [--cases ID,ID] [--devices N] [--timeout-ms MS] [--poison BYTE]

On an Ascend host, runs a fixed set of small cases through the npu backend (the real aclnn ops)
and compares the NPU's outputs with the reference backend's, byte for byte, so that each of the
README's Decisions (and its 950 and V2 Decisions) gets a visible answer. The V2 cases run
aclnnMoeDistributeDispatchV2 / CombineV2, or V4 / V3 when the op libraries have them (as torch_npu
picks them). Outputs are filled with a poison byte before each op:
bytes that stay poison are the ones the hardware does not write. Writes DIR/report.md and
DIR/report.json: each Decision confirmed, contradicted (with the first differing element:
rank, tensor, index, expected, actual), not written (the bytes stayed poison), or not testable
on this SoC/host (why). A case that needs more devices than the host has is reported as such.

Cases:
${PROBE_CASES.map((c) => `  ${c.id.padEnd(18)} ${c.decisions.length ? `${c.family === 'v2' ? 'V2 ' : c.platform === '950' ? '950 ' : ''}Decision ${c.decisions.join(', ')}` : 'no Decision'}: ${c.title} (W = ${caseRanks(c).join(', ')})`).join('\n')}

Options:
  --out DIR          where report.md and report.json go (required)
  --cases IDS        only these cases (comma-separated ids)
  --devices N        devices to use (default: aclrtGetDeviceCount)
  --timeout-ms MS    each op's stream timeout (default 30000)
  --poison BYTE      the fill byte, 1-255 (default 205 = 0xCD)
  -h, --help         show this help

Environment: ASCEND_HOME_PATH (CANN), ASCEND_OPP_PATH and ASCEND_CUSTOM_OPP_PATH (vendors' op
packages), HCCL_EXEC_TIMEOUT; the buffer-need cases set HCCL_BUFFSIZE per rank process themselves.

Exit codes: 0 no Decision contradicted, 1 a Decision contradicted or a case failed,
2 usage error or the npu backend not available here (CANN or the native bridge missing).
`;

export const probeCommand: Command = {
  name: 'probe',
  summary: 'on an Ascend host: run fixed cases on the NPU against the reference, report each Decision',
  help: HELP,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        cases: { type: 'string' },
        devices: { type: 'string' },
        'timeout-ms': { type: 'string' },
        poison: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`, 'probe');
    if (!values.out) throw new UsageError('--out DIR is required', 'probe');
    const cases = values.cases?.split(',').map((s) => s.trim()).filter((s) => s !== '');
    for (const id of cases ?? []) {
      if (!PROBE_CASES.some((c) => c.id === id)) throw new UsageError(`--cases: unknown case ${JSON.stringify(id)}; expected among ${PROBE_CASES.map((c) => c.id).join(', ')}`, 'probe');
    }
    const devices = values.devices !== undefined ? numberFlag('probe', 'devices', values.devices, { integer: true, min: 1 }) : undefined;
    const timeoutMs = values['timeout-ms'] !== undefined ? numberFlag('probe', 'timeout-ms', values['timeout-ms'], { integer: true, min: 1 }) : undefined;
    const poison = values.poison !== undefined ? numberFlag('probe', 'poison', values.poison, { integer: true, min: 1 }) : undefined;
    if (poison !== undefined && poison > 255) throw new UsageError(`--poison should be a byte in [1, 255], got ${poison}`, 'probe');
    const res = await runProbe({
      ...(io.env.ASCEND_HOME_PATH ? { ascendHome: io.env.ASCEND_HOME_PATH } : {}),
      env: io.env as NodeJS.ProcessEnv,
      ...(cases ? { cases } : {}),
      ...(devices !== undefined ? { devices } : {}),
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      ...(poison !== undefined ? { poison } : {}),
      log: (l) => io.stderr(`moe-distribute: ${l}\n`),
    });
    if (!res.available) {
      io.stderr(`moe-distribute: probe needs an Ascend host: the npu backend is not available: ${res.reason.replace(/\s*\n\s*/g, ' ')}\n`);
      return EXIT_USAGE;
    }
    const r = res.report;
    mkdirSync(values.out, { recursive: true });
    for (const [name, text] of [['report.json', `${JSON.stringify(r, null, 2)}\n`], ['report.md', reportMarkdown(r)]] as const) {
      const f = join(values.out, name);
      writeFileSync(`${f}.tmp`, text);
      renameSync(`${f}.tmp`, f);
    }
    for (const d of r.decisions) io.stdout(`${d.family === 'v2' ? 'V2 ' : d.platform === '950' ? '950 ' : ''}Decision ${d.decision}: ${d.verdict}\n`);
    const failed = r.cases.filter((c) => c.status === 'failed');
    for (const c of failed) io.stdout(`case ${c.id}: failed: ${c.reason}\n`);
    io.stdout(`report: ${join(values.out, 'report.md')}, ${join(values.out, 'report.json')}\n`);
    return r.decisions.some((d) => d.verdict === 'contradicted') || failed.length > 0 ? EXIT_CASE : EXIT_OK;
  },
};
