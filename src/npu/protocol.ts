// Messages between the npu group (parent) and a rank's child process, over the IPC channel with
// structured-clone serialization (typed arrays travel as they are).
import type { BridgeOp, BridgeTensor, RunOpOptions } from './bridge.js';

export type ChildRequest =
  | { type: 'init'; rank: number; deviceId: number; ascendHome: string }
  | { type: 'rootInfo' }
  | { type: 'joinRoot'; nRanks: number; rootInfo: Uint8Array; rank: number }
  | { type: 'joinCluster'; rankTable: string; rank: number }
  | { type: 'op'; op: BridgeOp; inputs: (BridgeTensor | null)[]; outputs: BridgeTensor[]; ints: number[]; groupEp: string; opts: RunOpOptions }
  | { type: 'sizes'; op: 'dispatchSetup' | 'combineSetup'; inputs: (BridgeTensor | null)[]; ints: number[]; groupEp: string; commAlg: string }
  | { type: 'close' };

/** The error of a CANN call as it crosses the channel (NpuError's fields). */
export interface WireError {
  name: string;
  message: string;
  api?: string;
  status?: number;
  cannMessage?: string;
  /** the stream did not complete within this many ms */
  timeoutMs?: number;
  /** GetWorkspaceSize refused with a code an op built for another SoC gives */
  unsupported?: boolean;
}

export type ChildReply =
  | { id: number; ok: true; value?: unknown }
  | { id: number; ok: false; error: WireError };

export type Envelope = ChildRequest & { id: number };
