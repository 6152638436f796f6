// The traps the A3 tiling and kernels set (contract §8): configurations every check accepts but
// that fail, collide or mislead on hardware. This is the one place that knows them; `plan`, `run`,
// `gen`, the group and the page all show what it returns. A warning never makes a valid
// configuration invalid (exit codes do not change); each names its numbers and the remedy, and
// carries a stable code for `--json` readers.
import {
  type GroupAttrs,
  type Layout,
  dispatchCommCmdInfoLen,
  setupTilingLocalExperts,
  sharedRankA,
} from './attrs.js';

export type WarningCode =
  | 'W_GLOBAL_BS_ZERO'
  | 'W_SETUP_LOCAL_EXPERTS'
  | 'W_SHARED_RANK_A'
  | 'W_SHARED_EXPERT_X_IGNORED'
  | 'W_Y_DTYPE'
  | 'W_950_PARTIAL_MASK'
  | 'W_950_SMOOTH_ROW';

export interface ContractWarning {
  code: WarningCode;
  /** what happens on hardware, with the numbers */
  message: string;
  /** what to do instead */
  remedy: string;
}

/** What a caller uses beyond the attributes: known to `run` and the group, not to `plan` from flags. */
export interface WarningUsage {
  /** shared_expert_x is passed to combine_teardown (by some rank) */
  sharedExpertX?: boolean;
  /** BS of each rank, when they differ (uneven BS with globalBs) */
  bsPerRank?: readonly number[];
  /** 950: an x_active_mask with false rows is passed to dispatch_setup (and the rows it sends wrong) */
  partialMask?: { rank: number; activeBs: number; bs: number; wrongRows: number };
  /** 950: smooth scales are passed to dispatch_setup */
  smoothScales?: boolean;
}

/** "warning W_CODE: message; remedy" */
export function warningText(w: ContractWarning): string {
  return `warning ${w.code}: ${w.message}; ${w.remedy}`;
}

/** Every trap of contract §8 that `lay` (and `usage`) sets, in a fixed order. */
export function contractWarnings(lay: Layout, usage: WarningUsage = {}): ContractWarning[] {
  // These are the setup/teardown family's traps. None holds for V2 (v2-contract §0, §1, §2.1):
  // global_bs = 0 is BS·W in its tiling and kernel, it has no setup tilings with L', its shared
  // rank's A is maxBS·ceil(W/R) everywhere, its kernel reads shared_expert_x, torch_npu allocates
  // its int8 expand_x itself.
  if (lay.family === 'v2') return [];
  const a: GroupAttrs = lay.attrs;
  const out: ContractWarning[] = [];
  const { W, S, SN, E, L, K } = lay;

  if (a.globalBs === 0) {
    out.push({
      code: 'W_GLOBAL_BS_ZERO',
      message:
        `globalBs = 0: the open kernels compute maxBs = globalBs / epWorldSize = 0, so every (sender, expert) block lands at offset 0 of the window and the blocks collide; ` +
        `only the host-side size checks read 0 as BS * epWorldSize = ${lay.gbs}. The simulation uses ${lay.gbs} (Decision 17)`,
      remedy: `pass globalBs = BS * epWorldSize = ${lay.gbs}, as the torch_npu example does`,
    });
  }

  // the dispatch_setup tiling sizes comm_cmd_info with L', the teardown and op-plugin with L
  if (W > S && L > 0) {
    const lSetup = setupTilingLocalExperts(lay);
    if (lSetup !== L) {
      const bs = lay.maxBs;
      const rankMoe = S; // the first MoE rank
      const teardownLen = dispatchCommCmdInfoLen(lay, bs, rankMoe);
      const setupLen = (bs * (K + SN) + W * lSetup) * 16;
      const why =
        W - SN <= 0
          ? `the dispatch_setup tiling computes localExpertNum = moeExpertNum / (epWorldSize - sharedExpertNum) with epWorldSize - sharedExpertNum = ${W - SN} (unsigned: it wraps or divides by zero)`
          : `the dispatch_setup tiling computes localExpertNum = moeExpertNum / (epWorldSize - sharedExpertNum) = floor(${E} / ${W - SN}) = ${lSetup}, not L = moeExpertNum / (epWorldSize - sharedExpertRankNum) = ${L}`;
      out.push({
        code: 'W_SETUP_LOCAL_EXPERTS',
        message:
          `${why}: it checks comm_cmd_info as (BS * (K + sharedExpertNum) + epWorldSize * ${lSetup}) * 16 = ${setupLen} entries, while dispatch_teardown, op-plugin and the size helper use ` +
          `(BS * (K + sharedExpertNum) + epWorldSize * ${L}) * 16 = ${teardownLen}: no comm_cmd_info tensor passes both, so the ops fail on hardware; ` +
          `it also sizes the setup tilings' HCCL_BUFFSIZE figure with ${lSetup}`,
        remedy:
          S === 0
            ? `pass sharedExpertNum = 0 when no shared expert is deployed (sharedExpertRankNum = 0): then both read ${Math.floor(E / W)}`
            : `choose sharedExpertNum = sharedExpertRankNum (then W - SN = W - S), or E, W and S with floor(E / (W - SN)) = E / (W - S)`,
      });
    }
  }

  const bsList = usage.bsPerRank && usage.bsPerRank.length > 0 ? [...new Set(usage.bsPerRank)] : [lay.maxBs];
  for (const bs of bsList) {
    const f = sharedRankA(lay, bs);
    if (!f) break;
    if (f.tiling !== f.arrive || f.opPlugin !== f.arrive || f.documented !== f.arrive) {
      out.push({
        code: 'W_SHARED_RANK_A',
        message:
          `rows of expand_x on a shared rank (BS = ${bs}): the A3 dispatch_teardown tiling demands exactly BS * W * SN / S = ${f.tiling}, op-plugin allocates globalBs / S = ${f.opPlugin}, ` +
          `the docs say globalBs * SN / S = ${f.documented}, and up to maxBs * ceil(W / R) = ${f.arrive} rows can arrive (R = ${lay.R} ranks per shared expert); ` +
          `the simulation allocates ${f.arrive} (Decision 1), the npu backend what the tiling demands (${f.tiling})`,
        remedy: `choose S, SN and W with R = S / SN dividing W and one BS on every rank, so that the figures agree`,
      });
    }
  }

  if (usage.sharedExpertX) {
    out.push({
      code: 'W_SHARED_EXPERT_X_IGNORED',
      message:
        'shared_expert_x is passed to combine_teardown, but no kernel reads it (A3 combine_teardown, 950) and the newest aclnn header calls it "reserved, not used yet, pass null": ' +
        'the output does not include it, here as on hardware (Decision 18)',
      remedy: 'add the shared expert output to x_out yourself after combine_teardown, or deploy shared experts on shared ranks (sharedExpertRankNum > 0)',
    });
  }

  if (lay.platform.ySortedByExpert && usage.partialMask && !a.fix950MaskSort) {
    const m = usage.partialMask;
    out.push({
      code: 'W_950_PARTIAL_MASK',
      message:
        `rank ${m.rank} passes an x_active_mask with ${m.bs - m.activeBs} false rows of ${m.bs}: the 950 dispatch_setup kernel sorts all BS * K pairs, inactive ones included, ` +
        `but cuts the blocks by the active counts, so ${m.wrongRows} of its ${m.activeBs * lay.K} sent rows carry another token or expert (950 contract §2.1.4); ` +
        'the simulation reproduces the open kernel (Decision)',
      remedy: 'pass no mask (or all true) on 950, or set fix950MaskSort to see what a fixed kernel would send (the A3 result)',
    });
  }

  if (lay.platform.ySortedByExpert && usage.smoothScales && !a.fix950SmoothRow) {
    out.push({
      code: 'W_950_SMOOTH_ROW',
      message:
        'smooth scales on 950: the dispatch_setup kernel quantizes sorted row p with the scale row of the unsorted expert id at index p, not of the expert the row is sent to (950 contract §2.4, DSk:544, 564); ' +
        'the simulation reproduces the open kernel (Decision)',
      remedy: 'set fix950SmoothRow to see what a fixed kernel would send',
    });
  }

  if (lay.quant === 'token' && (a.yDtype === '' || a.yDtype === undefined)) {
    out.push({
      code: 'W_Y_DTYPE',
      message:
        'current torch_npu adds y_dtype to npu_moe_distribute_dispatch_setup: with quantMode = 2 and y_dtype left out, y gets x\'s dtype and the tiling rejects it ' +
        `("${lay.platform.quantModes[2]!.yRule}"); the simulation takes int8`,
      remedy: lay.platform.name === '950'
        ? 'pass y_dtype = 1 (torch.int8), 24 (float8_e4m3fn) or 23 (float8_e5m2) to npu_moe_distribute_dispatch_setup when quant_mode = 2 (yDtype in the case)'
        : 'pass y_dtype = 1 (torch.int8) to npu_moe_distribute_dispatch_setup when quant_mode = 2',
    });
  }
  return out;
}
