// One rank's view of a group: the ops without the rank argument (the setup family's four, V2's
// two), as a rank's program on hardware calls them (torch_npu passes ep_rank_id on every call;
// here the view carries it).
import type { GroupAttrs, Layout } from '../contract/attrs.js';
import type { EpGroup } from './group.js';
import type {
  CombineSetupInputs,
  CombineSetupOutputs,
  CombineTeardownInputs,
  CombineTeardownOutputs,
  CombineV2Inputs,
  CombineV2Outputs,
  DispatchSetupInputs,
  DispatchSetupOutputs,
  DispatchTeardownInputs,
  DispatchTeardownOutputs,
  DispatchV2Inputs,
  DispatchV2Outputs,
} from '../contract/ops.js';

export class RankGroup {
  constructor(
    private readonly group: EpGroup,
    readonly epRankId: number,
  ) {}

  get layout(): Layout {
    return this.group.layout;
  }

  get attrs(): GroupAttrs {
    return this.group.attrs;
  }

  dispatchSetup(inp: DispatchSetupInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchSetupOutputs> {
    return this.group.dispatchSetup(this.epRankId, inp, attrs);
  }

  dispatchTeardown(inp: DispatchTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchTeardownOutputs> {
    return this.group.dispatchTeardown(this.epRankId, inp, attrs);
  }

  combineSetup(inp: CombineSetupInputs, attrs?: Partial<GroupAttrs>): Promise<CombineSetupOutputs> {
    return this.group.combineSetup(this.epRankId, inp, attrs);
  }

  combineTeardown(inp: CombineTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<CombineTeardownOutputs> {
    return this.group.combineTeardown(this.epRankId, inp, attrs);
  }

  dispatchV2(inp: DispatchV2Inputs, attrs?: Partial<GroupAttrs>): Promise<DispatchV2Outputs> {
    return this.group.dispatchV2(this.epRankId, inp, attrs);
  }

  combineV2(inp: CombineV2Inputs, attrs?: Partial<GroupAttrs>): Promise<CombineV2Outputs> {
    return this.group.combineV2(this.epRankId, inp, attrs);
  }
}
