#!/usr/bin/env python3
"""PyTorch DDP's data-parallel figure for a model equivalent to our 130M Mamba LM, to set beside
scripts/scaling_bench.sh's (issue: "put PyTorch DDP's figure for an equivalent model beside ours").

Equivalent means: the same per-GPU batch (8 x 2048 random tokens), the same size of gradient to exchange
(a 125M-parameter GPT-2 from transformers, tied embeddings, vocabulary 50277: 125M against our 129M), a step
of the same order, bf16 autocast with f32 master weights, fused AdamW (0.9, 0.95, weight decay 0.1), clip 1.0,
and DDP's defaults (25 MB buckets, f32 all-reduce overlapping the backward). The GPU machine has PyTorch and
transformers but not mamba_ssm, and transformers' Mamba without it runs a per-step Python loop whose step
would hide any communication, so the Mamba itself is not the comparator.

  torchrun --standalone --nproc_per_node N bench/ddp_reference.py [--steps 30] [--warmup 5]
  NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 torchrun ...     # NCCL on its network transport
  torchrun --standalone --nproc_per_node 2 bench/ddp_reference.py --tiny   # a CPU smoke run (gloo)

Rank 0 prints one JSON line: world size, tokens/s over all ranks (median step after the warm-up), the
median step, peak memory of rank 0 (MiB, GPU only), parameters.
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    ap.add_argument("--batch", type=int, default=8, help="sequences per GPU (default 8)")
    ap.add_argument("--context", type=int, default=2048, help="tokens per sequence (default 2048)")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model for a CPU smoke run")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.context < 2:
        print("ddp_reference.py: --steps, --batch >= 1, --warmup >= 0, --context >= 2", file=sys.stderr)
        sys.exit(2)
    if "RANK" not in os.environ:
        print("ddp_reference.py: start it with torchrun (see --help)", file=sys.stderr)
        sys.exit(2)

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from transformers import GPT2Config, GPT2LMHeadModel

    cuda = torch.cuda.is_available() and not args.tiny
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)

    if args.tiny:
        cfg = GPT2Config(vocab_size=256, n_positions=args.context, n_embd=64, n_layer=2, n_head=4, bos_token_id=0,
                         eos_token_id=0)
    else:
        cfg = GPT2Config(vocab_size=50277, n_positions=args.context, n_embd=768, n_layer=12, n_head=12)
    model = GPT2LMHeadModel._from_config(cfg, attn_implementation="sdpa").to(device)  # f32 master weights
    params = sum(p.numel() for p in model.parameters())
    ddp = DDP(model, device_ids=[local] if cuda else None, gradient_as_bucket_view=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), fused=cuda)
    gen = torch.Generator(device="cpu").manual_seed(1000 + rank)  # each rank its own shard of random tokens

    def step():
        tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.context), generator=gen).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = ddp(input_ids=tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    # The slowest rank's step is the job's step.
    med = torch.tensor([statistics.median(times)], dtype=torch.float64)
    dist.all_reduce(med, op=dist.ReduceOp.MAX)
    step_s = float(med.item())
    if rank == 0:
        print(json.dumps({
            "bench": "ddp_reference", "model": "gpt2-tiny" if args.tiny else "gpt2-125m", "params": params,
            "world_size": world, "batch_per_rank": args.batch, "context": args.context,
            "tokens_per_second": round(world * args.batch * args.context / step_s, 1),
            "step_ms_median": round(1e3 * step_s, 3),
            "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
            "loss": round(float(loss.item()), 4),
            "nccl_net": os.environ.get("NCCL_P2P_DISABLE") == "1" and os.environ.get("NCCL_SHM_DISABLE") == "1",
            "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        }), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
