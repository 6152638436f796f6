// The npu backend wired to the fake CANN for the conformance suite. The fake records the calls and
// does not compute the ops, so only what the npu group itself decides is meaningful here: the
// preflight (attributes, dimensions, HCCL_BUFFSIZE), the per-rank checks of each op's tensors
// (dtypes, shapes, the values a rank must pass back unchanged), op order, and the dtypes and
// shapes of every output. Every other case is skipped with its reason. A 950 group runs on the
// fake in its 950 mode (a 950 SoC name: fp8 tensors, the 950 tilings' checks), as it would run only
// on a 950 host.
import { afterEach } from 'vitest';
import { createGroup, loadBridge, type NpuGroup } from '../../src/index.js';
import { FAKE_950_ENV, fakeCannHome } from '../npu-fake-cann.js';
import type { BackendUnderTest, GroupLike, GroupSpec } from './harness.js';

const NUMBERS = 'checks the ops\' numbers, which the fake CANN does not compute (it records the calls); on hardware, `moe-distribute verify` compares them (docs/ascend.md)';
const ACROSS_RANKS = 'a check across ranks made by the simulated group\'s window protocol; the npu group sees only its own rank\'s inputs, and on hardware ranks meet inside the aclnn ops (HCCL)';
const FROM_RESULTS = 'the expected value in the message comes from the op\'s results, which the fake CANN does not compute';

/** Titles that run on npu-fake; anything else is skipped with the reason of the first matching rule. */
const RUN: RegExp[] = [
  /^createGroup rejects /,
  /^the documented configuration is accepted/,
  /^HCCL_BUFFSIZE too small/,
  /^(dispatchSetup|dispatchTeardown|combineSetup|combineTeardown) rejects .*; the round then completes as if nothing happened$/,
  /^E_ORDER: /,
  /^attributes that differ across layers/,
  /^sanity of the hand values \(pure arithmetic/,
  /^refusals the 950 tilings make, before anything is written/,
];
const SKIP: [RegExp, string][] = [
  [/assistInfoForCombine not what dispatchTeardown returned|expandIdx other than returned/, FROM_RESULTS],
  [/^uneven BS needs globalBs|dtypes? that differ between ranks|whose dtype differs between ranks|^E_MISSING/, ACROSS_RANKS],
];

export function skipOnFake(title: string): string | undefined {
  for (const [re, why] of SKIP) if (re.test(title)) return why;
  if (RUN.some((re) => re.test(title))) return undefined;
  return NUMBERS;
}

const live = new Set<NpuGroup>();
// the rank processes of a test's groups end with the test
afterEach(async () => {
  const gs = [...live];
  live.clear();
  await Promise.all(gs.map((g) => g.dispose()));
});

export async function npuFakeBackend(): Promise<BackendUnderTest> {
  const name = 'npu-fake';
  let home: string;
  try {
    home = fakeCannHome();
  } catch (e) {
    const reason = `the fake CANN does not build here (g++): ${String((e as Error).message).split('\n')[0]}`;
    return { name, make: () => Promise.reject(new Error(reason)), skipReason: reason };
  }
  const b = loadBridge({ ascendHome: home });
  const make = async (opts: GroupSpec): Promise<GroupLike> => {
    const env = opts.platform === '950' ? { env: { ...FAKE_950_ENV } } : {};
    const g = (await createGroup({ ...opts, backend: 'npu', npu: { ascendHome: home, ...env } })) as NpuGroup;
    live.add(g);
    return g;
  };
  if (!b.available) return { name, make, skipReason: `the npu backend is not available: ${b.reason}` };
  return { name, make, skipCase: skipOnFake };
}
