#!/usr/bin/env python3
"""The torch_npu seed example of the four MoE distribute ops, dumping what moe-distribute needs.

Run on an Atlas A3 host with 16 NPUs:

  python3 npu_dump.py CASE_DIR DUMP_DIR
  moe-distribute run CASE_DIR --out HOST_OUT
  moe-distribute verify DUMP_DIR HOST_OUT --case CASE_DIR

Each rank process writes its own inputs into CASE_DIR and its own outputs into DUMP_DIR (rank 0
also writes CASE_DIR/case.json), through dump_case.py next to this file. The tensors are copied
to the CPU after the ops, so the dumps do not change what the NPU computes.
"""

import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch_npu

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_case import write_case_json, write_rank_inputs, write_rank_outputs  # noqa: E402

quant_mode = 2               # 0: no quantization, 2: dynamic quantization
comm_quant_mode = 0
is_dispatch_scales = True    # quant mode 2 may pass smooth scales or not
input_dtype = torch.bfloat16
shared_expert_rank_num = 0
moe_expert_num = 16
bs = 64
h = 1024
k = 8
random_seed = 0
ep_world_size = 16
global_bs = bs * ep_world_size   # pass BS * W, not 0 (op-contract §8: 0 collides the blocks)
# Current torch_npu adds y_dtype to dispatch_setup; with quant mode 2 it must say int8
# (torch's ScalarType 1), else y keeps x's dtype and the tiling rejects it (op-contract §8).
# Set it to False for a torch_npu whose dispatch_setup has no y_dtype.
PASS_Y_DTYPE = True

# The attributes every op gets (besides group_ep and ep_rank_id), as case.json will hold them.
ATTRS = dict(ep_world_size=ep_world_size, moe_expert_num=moe_expert_num, expert_shard_type=0,
             shared_expert_rank_num=shared_expert_rank_num, quant_mode=quant_mode,
             global_bs=global_bs, comm_quant_mode=comm_quant_mode)


def gen_unique_topk_array(low, high):
    return np.array([np.random.permutation(np.arange(low, high, dtype=np.int32))[:k] for _ in range(bs)])


def rank_main(rank, case_dir, dump_dir):
    torch_npu.npu.set_device(rank)
    dist.init_process_group(backend="hccl", world_size=ep_world_size, rank=rank,
                            init_method="tcp://127.0.0.1:50001")
    ep_group = dist.new_group(backend="hccl", ranks=range(ep_world_size))
    group_ep = ep_group._get_backend(torch.device("npu")).get_hccl_comm_name(rank)
    common = dict(group_ep=group_ep, ep_world_size=ep_world_size, ep_rank_id=rank,
                  moe_expert_num=moe_expert_num, expert_shard_type=0,
                  shared_expert_rank_num=shared_expert_rank_num, global_bs=global_bs)

    np.random.seed(random_seed + rank)
    torch.manual_seed(random_seed + rank)
    x = torch.randn(bs, h, dtype=input_dtype).npu()
    expert_ids = torch.from_numpy(gen_unique_topk_array(0, moe_expert_num).astype(np.int32)).npu()
    expert_scales = torch.randn(bs, k, dtype=torch.float32).npu()
    scales_shape = (1 + moe_expert_num, h) if shared_expert_rank_num == 0 else (moe_expert_num, h)
    scales = torch.randn(scales_shape, dtype=torch.float32).npu() if quant_mode == 2 and is_dispatch_scales else None
    extra = {"y_dtype": 1} if quant_mode == 2 and PASS_Y_DTYPE else {}

    torch.npu.synchronize()
    y, expand_idx, comm_cmd_info = torch_npu.npu_moe_distribute_dispatch_setup(
        x=x, expert_ids=expert_ids, scales=scales, quant_mode=quant_mode, **common, **extra)
    torch.npu.synchronize()
    expand_x, dynamic_scales, assist_info_for_combine, expert_token_nums = \
        torch_npu.npu_moe_distribute_dispatch_teardown(
            x=x, y=y, expert_ids=expert_ids, comm_cmd_info=comm_cmd_info, quant_mode=quant_mode, **common)
    # The experts. The seed example feeds the int8 codes, cast, back to combine; a model runs its
    # FFN here. Whatever combine_setup gets as expand_x is the case's expert_output.
    expert_output = expand_x.to(input_dtype) if quant_mode == 2 else expand_x
    torch.npu.synchronize()
    quant_expand_x, combine_comm_cmd_info = torch_npu.npu_moe_distribute_combine_setup(
        expand_x=expert_output, expert_ids=expert_ids, assist_info_for_combine=assist_info_for_combine,
        comm_quant_mode=comm_quant_mode, **common)
    torch.npu.synchronize()
    x_out = torch_npu.npu_moe_distribute_combine_teardown(
        expand_x=expert_output, quant_expand_x=quant_expand_x, expert_ids=expert_ids,
        expand_idx=expand_idx, expert_scales=expert_scales, comm_cmd_info=combine_comm_cmd_info,
        comm_quant_mode=comm_quant_mode, **common)
    torch.npu.synchronize()

    # The dumps: CPU copies, after every op of the round has run.
    if rank == 0:
        write_case_json(case_dir, ATTRS)
    write_rank_inputs(case_dir, rank, x=x, expert_ids=expert_ids, expert_scales=expert_scales,
                      scales=scales, expert_output=expert_output)
    write_rank_outputs(dump_dir, rank, y=y, expand_idx=expand_idx, comm_cmd_info=comm_cmd_info,
                       expand_x=expand_x, dynamic_scales=dynamic_scales,
                       assist_info_for_combine=assist_info_for_combine,
                       expert_token_nums=expert_token_nums, quant_expand_x=quant_expand_x,
                       combine_comm_cmd_info=combine_comm_cmd_info, x_out=x_out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} CASE_DIR DUMP_DIR")
    mp.spawn(rank_main, args=(sys.argv[1], sys.argv[2]), nprocs=ep_world_size, join=True)
