#!/usr/bin/env python3
"""Write a torch_npu MoE distribute call's tensors in moe-distribute's formats.

A *case directory* holds what `moe-distribute run CASE_DIR --out HOST_OUT` reads: case.json (the
attributes) and each rank's inputs. A *dump directory* holds a rank's outputs of the four ops, as
`moe-distribute verify DUMP HOST_OUT --case CASE_DIR` compares them. Both come in two forms:

  safetensors  rank{r}.safetensors, via safetensors.torch.save_file (needs torch and safetensors)
  npy          rank{r}/NAME.npy, numpy alone; bf16 (which numpy lacks) is stored as its raw bits,
               dtype '<u2', with a file NAME.dtype beside it holding "bf16"

The writers take torch tensors (any device; they are copied to the CPU) or numpy arrays. numpy has
no bf16, so a numpy array of dtype uint16 means *bf16 bits*: no tensor of these ops is uint16.

Import it in the rank processes of a torch_npu job (see npu_dump.py and docs/from-torch.md), or
run it without torch:

  python3 dump_case.py --numpy-demo CASE_DIR [--format npy|safetensors]
      a small synthetic case (W 2, E 4, H 1024, BS 4, K 2, bf16 x, quant mode 2)
  python3 dump_case.py --redump HOST_OUT DUMP_DIR [--format npy|safetensors]
      reads a `moe-distribute run` output directory and writes its outputs again through
      write_rank_outputs (what CI uses to check this recipe against the CLI)
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np

try:
    import torch
except ImportError:  # the npy form needs numpy only
    torch = None

try:
    import safetensors.torch as st
except ImportError:
    st = None

# case.json's keys (moe-distribute's names) and the torch_npu keyword each comes from.
CASE_FIELDS = {
    "ep_world_size": "epWorldSize",
    "moe_expert_num": "moeExpertNum",
    "shared_expert_num": "sharedExpertNum",
    "shared_expert_rank_num": "sharedExpertRankNum",
    "quant_mode": "quantMode",
    "global_bs": "globalBs",
    "expert_token_nums_type": "expertTokenNumsType",
    "comm_quant_mode": "commQuantMode",
    "expert_shard_type": "expertShardType",
    "group_ep": "groupEp",
    "y_dtype": "yDtype",
    # the V2 ops (npu_moe_distribute_dispatch_v2 / combine_v2)
    "zero_expert_num": "zeroExpertNum",
    "copy_expert_num": "copyExpertNum",
    "const_expert_num": "constExpertNum",
    "comm_alg": "commAlg",
    # not torch_npu keywords: the chip whose kernels are reproduced, and the 950 Decisions' flags
    "platform": "platform",
    "family": "family",
    "fix950_mask_sort": "fix950MaskSort",
    "fix950_smooth_row": "fix950SmoothRow",
}
# torch_npu keywords that are not case attributes: per rank, or fixed by the platform.
NOT_CASE_FIELDS = {"ep_rank_id", "comm_type"}

INPUT_TENSORS = ("x", "expert_ids", "expert_scales", "scales", "x_active_mask",
                 "shared_expert_x", "expert_output", "ori_x")
OUTPUT_TENSORS = ("y", "expand_idx", "comm_cmd_info",                   # dispatch_setup
                  "expand_x", "dynamic_scales", "assist_info_for_combine",
                  "expert_token_nums",                                   # dispatch_teardown
                  "quant_expand_x", "combine_comm_cmd_info",             # combine_setup
                  "x_out")                                               # combine_teardown


def have_safetensors():
    return torch is not None and st is not None


def case_attrs(attrs):
    """case.json's document from torch_npu keyword arguments (or moe-distribute's names).

    group_ep is best left out: torch_npu's is the HCCL communicator's name, which has no bearing
    on the result, and the case's default stands in for it.
    """
    doc = {}
    camel = set(CASE_FIELDS.values())
    for key, value in attrs.items():
        if key in NOT_CASE_FIELDS:
            continue
        name = CASE_FIELDS.get(key, key)
        if name not in camel:
            raise ValueError(f"unknown attribute {key!r}; expected one of {sorted(CASE_FIELDS)}")
        if name in ("groupEp", "platform", "family", "commAlg"):
            doc[name] = str(value)
        elif name in ("fix950MaskSort", "fix950SmoothRow"):
            doc[name] = bool(value)
        elif name == "yDtype":
            # torch_npu's integer code (1 int8, 23/291 fp8_e5m2, 24/292 fp8_e4m3fn), or a dtype name
            doc[name] = value if isinstance(value, str) else int(value)
        else:
            if int(value) != value:
                raise ValueError(f"attribute {key!r} is {value!r}; expected an integer")
            doc[name] = int(value)
    for required in ("epWorldSize", "moeExpertNum"):
        if required not in doc:
            raise ValueError(f"attribute {required} is required (it has no default)")
    return doc


def _as_numpy(t):
    """(array, is_bf16) of a torch tensor or numpy array, C-contiguous, on the CPU."""
    if torch is not None and isinstance(t, torch.Tensor):
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            # numpy has no bf16: keep the raw bits, reinterpreted, never converted
            return t.view(torch.int16).numpy().view("<u2"), True
        return t.numpy(), False
    a = np.ascontiguousarray(t)
    return a, a.dtype == np.uint16


def _as_torch(t):
    """A CPU torch tensor for safetensors: numpy uint16 arrays become bf16 (their bits)."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().contiguous()
    a, bf16 = _as_numpy(t)
    if bf16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def _write_npy_dir(path, tensors):
    """path/NAME.npy (+ NAME.dtype for bf16), filled under a temporary name, then renamed."""
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        for name, t in tensors.items():
            a, bf16 = _as_numpy(t)
            if a.dtype.byteorder == ">":
                a = a.astype(a.dtype.newbyteorder("<"))
            np.save(os.path.join(tmp, f"{name}.npy"), a)
            if bf16:
                with open(os.path.join(tmp, f"{name}.dtype"), "w") as f:
                    f.write("bf16\n")
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_safetensors(path, tensors):
    if not have_safetensors():
        raise RuntimeError("the safetensors form needs torch and safetensors; use format='npy'")
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        st.save_file({name: _as_torch(t) for name, t in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_rank(out_dir, rank, tensors, allowed, fmt):
    unknown = [n for n in tensors if n not in allowed]
    if unknown:
        raise ValueError(f"unknown tensor names {unknown}; expected {list(allowed)}")
    present = {n: t for n, t in tensors.items() if t is not None}
    if fmt == "auto":
        fmt = "safetensors" if have_safetensors() else "npy"
    os.makedirs(out_dir, exist_ok=True)
    st_path = os.path.join(out_dir, f"rank{rank}.safetensors")
    npy_path = os.path.join(out_dir, f"rank{rank}")
    # a reader refuses a rank that has both forms: the other one goes once this one is written
    if fmt == "npy":
        _write_npy_dir(npy_path, present)
        if os.path.exists(st_path):
            os.unlink(st_path)
        return npy_path
    if fmt == "safetensors":
        _write_safetensors(st_path, present)
        if os.path.isdir(npy_path):
            shutil.rmtree(npy_path)
        return st_path
    raise ValueError(f"format should be 'auto', 'npy' or 'safetensors', got {fmt!r}")


def write_case_json(case_dir, attrs):
    """CASE_DIR/case.json from the attributes passed to the four ops (written atomically)."""
    os.makedirs(case_dir, exist_ok=True)
    path = os.path.join(case_dir, "case.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(case_attrs(attrs), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def write_rank_inputs(case_dir, rank, *, x, expert_ids, expert_scales, scales=None,
                      x_active_mask=None, shared_expert_x=None, expert_output=None, fmt="auto"):
    """One rank's inputs into CASE_DIR.

    x (BS, H) bf16/fp16, expert_ids (BS, K) int32, expert_scales (BS, K) float32: the inputs of
    dispatch_setup and combine_teardown. scales (E + SN, H) float32 and x_active_mask (BS,) bool
    when the call passes them; shared_expert_x when combine_teardown gets one. expert_output
    (A, H) in x's dtype is the tensor the call gives combine_setup as expand_x (the experts'
    output); without it `run` uses an identity expert, which a real model's call does not.
    """
    return _write_rank(case_dir, rank, {
        "x": x, "expert_ids": expert_ids, "expert_scales": expert_scales, "scales": scales,
        "x_active_mask": x_active_mask, "shared_expert_x": shared_expert_x,
        "expert_output": expert_output,
    }, INPUT_TENSORS, fmt)


def write_rank_outputs(dump_dir, rank, fmt="auto", **outputs):
    """One rank's outputs of the four ops into DUMP_DIR, under the names `run` writes.

    y, expand_idx, comm_cmd_info come from dispatch_setup; expand_x, dynamic_scales,
    assist_info_for_combine, expert_token_nums from dispatch_teardown (expand_x as returned, int8
    in quant mode 2, not converted); quant_expand_x and the second comm_cmd_info (pass it as
    combine_comm_cmd_info) from combine_setup; x_out is combine_teardown's result. Any may be
    left out: verify compares only the tensors the dump holds.
    """
    return _write_rank(dump_dir, rank, outputs, OUTPUT_TENSORS, fmt)


def write_case(case_dir, attrs, ranks, fmt="auto"):
    """A whole case at once: case.json and every rank's inputs (a list of keyword dicts)."""
    write_case_json(case_dir, attrs)
    return [write_rank_inputs(case_dir, r, fmt=fmt, **inputs) for r, inputs in enumerate(ranks)]


# ---- without torch: a synthetic case, and re-dumping a host run --------------------------------

def f32_to_bf16_bits(a):
    """float32 -> bf16 bits, round half to even (finite values)."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def numpy_demo_case(seed=0):
    """Attributes and per-rank inputs of a small case, as a torch_npu job would pass them."""
    W, E, H, BS, K = 2, 4, 1024, 4, 2
    L = E // W
    A = BS * W * min(L, K)  # rows of expand_x on a MoE rank (global_bs = BS * W)
    rng = np.random.default_rng(seed)
    # No shared expert deployed: shared_expert_num 0 (with the default 1 the dispatch_setup tiling
    # counts E / (W - 1) local experts, op-contract.md §8); global_bs = BS * W, not 0.
    SN = 0
    attrs = dict(ep_world_size=W, moe_expert_num=E, shared_expert_num=SN, shared_expert_rank_num=0,
                 quant_mode=2, global_bs=BS * W, expert_token_nums_type=1, comm_quant_mode=0)
    ranks = []
    for _ in range(W):
        ranks.append(dict(
            x=f32_to_bf16_bits(rng.standard_normal((BS, H), dtype=np.float32)),
            expert_ids=np.stack([rng.permutation(E)[:K] for _ in range(BS)]).astype(np.int32),
            expert_scales=rng.random((BS, K), dtype=np.float32),
            scales=rng.standard_normal((E + SN, H), dtype=np.float32),
            x_active_mask=np.array([True, True, True, False]),
            expert_output=f32_to_bf16_bits(rng.standard_normal((A, H), dtype=np.float32)),
        ))
    return attrs, ranks


def _read_npy_dir(path):
    out = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".npy"):
            name = f[:-4]
            a = np.load(os.path.join(path, f))
            note = os.path.join(path, f"{name}.dtype")
            if os.path.exists(note):
                with open(note) as n:
                    if n.read().strip() != "bf16":
                        raise ValueError(f"{note}: expected bf16")
                # uint16 is what the writers take as bf16 bits
                a = a.view(np.uint16)
            out[name] = a
    return out


def redump(host_out, dump_dir, fmt="auto"):
    """Every rank of a `moe-distribute run` output directory, written again by write_rank_outputs."""
    with open(os.path.join(host_out, "case.json")) as f:
        W = json.load(f)["epWorldSize"]
    for r in range(W):
        npy_dir = os.path.join(host_out, f"rank{r}")
        if os.path.isdir(npy_dir):
            tensors = _read_npy_dir(npy_dir)
        else:
            if not have_safetensors():
                raise RuntimeError(f"{host_out}/rank{r}.safetensors needs torch and safetensors to read")
            tensors = st.load_file(os.path.join(host_out, f"rank{r}.safetensors"))
        write_rank_outputs(dump_dir, r, fmt=fmt, **tensors)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--numpy-demo", metavar="CASE_DIR", help="write a small synthetic case")
    g.add_argument("--redump", nargs=2, metavar=("HOST_OUT", "DUMP_DIR"),
                   help="write a run's outputs again through write_rank_outputs")
    p.add_argument("--format", choices=("auto", "npy", "safetensors"), default="npy",
                   help="npy (default: numpy alone), safetensors (torch + safetensors) or auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.numpy_demo:
        attrs, ranks = numpy_demo_case(args.seed)
        write_case(args.numpy_demo, attrs, ranks, fmt=args.format)
        print(f"wrote case {args.numpy_demo} ({len(ranks)} ranks, {args.format})")
    else:
        redump(*args.redump, fmt=args.format)
        print(f"wrote dump {args.redump[1]} from {args.redump[0]} ({args.format})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
