#!/usr/bin/env python3
"""Checks ssm's Hugging Face export and import against transformers' MambaForCausalLM (GPU machine,
where transformers is installed; runs on the CPU in float32).

1. export: train a small ssm Mamba LM for a few steps on random tokens, `ssm export --format hf`, load it
   with MambaForCausalLM.from_pretrained, and compare its logits with `ssm logits` on the same tokens.
2. import: build a random MambaForCausalLM with transformers, save_pretrained (safetensors), `ssm import`
   it, and compare `ssm logits` with transformers' logits.
Passes when the relative error max|a - b| / max|b| is below 1e-4 in both directions. Exit code 1 otherwise.
Usage: scripts/check_hf_export.py [--ssm build/bin/ssm] [--work DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import MambaConfig, MambaForCausalLM


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def ssm_logits(ssm, ckpt, tokens, out):
    run([ssm, "logits", ckpt, "--prompt-tokens", " ".join(map(str, tokens)), "--out", out])
    return load_file(out)["logits"].double()


def hf_logits(model_dir, tokens):
    model = MambaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits.double()


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssm", default="build/bin/ssm")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="ssm-hf-check-")
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(0)
    tokens = torch.randint(0, 256, (37,)).tolist()
    results = {}

    # 1. ssm -> transformers
    recipe = os.path.join(work, "tiny.yaml")
    with open(recipe, "w") as f:
        f.write("model: {name: mamba_lm, d_model: 64, n_layer: 3, vocab_size: 256, d_state: 16}\n"
                "data: {name: synthetic, vocab_size: 256, rows: 64, context: 64, batch_size: 4}\n"
                "optimizer: {name: adamw, lr: 0.003}\n"
                f"trainer: {{steps: 20, device: cpu, out_dir: {work}/run, log_every: 10}}\n")
    run([args.ssm, "train", recipe])
    run([args.ssm, "export", f"{work}/run", "--format", "hf", "--out", f"{work}/hf-export"])
    ours = ssm_logits(args.ssm, f"{work}/run", tokens, f"{work}/ours.safetensors")
    theirs = hf_logits(f"{work}/hf-export", tokens)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    results["export_rel_err"] = rel_err(ours, theirs)

    # 2. transformers -> ssm
    cfg = MambaConfig(vocab_size=264, hidden_size=96, state_size=16, num_hidden_layers=2, expand=2, conv_kernel=4,
                      time_step_rank=6, tie_word_embeddings=True)
    model = MambaForCausalLM(cfg).eval()
    model.save_pretrained(f"{work}/hf-orig", safe_serialization=True)
    run([args.ssm, "import", f"{work}/hf-orig", "--out", f"{work}/imported"])
    ours = ssm_logits(args.ssm, f"{work}/imported", tokens, f"{work}/ours-imported.safetensors")
    with torch.no_grad():
        theirs = model(torch.tensor([tokens])).logits.double()
    results["import_rel_err"] = rel_err(ours, theirs)

    # 3. refusals: a LayerNorm model cannot be exported to HF.
    recipe_ln = os.path.join(work, "tiny-ln.yaml")
    with open(recipe_ln, "w") as f:
        f.write(open(recipe).read().replace("d_state: 16}", "d_state: 16, norm: layer}").replace("/run", "/run-ln"))
    run([args.ssm, "train", recipe_ln])
    r = subprocess.run([args.ssm, "export", f"{work}/run-ln", "--format", "hf", "--out", f"{work}/hf-ln"],
                       capture_output=True, text=True)
    results["layernorm_refused"] = r.returncode == 2 and "RMSNorm" in r.stderr
    print(json.dumps(results))
    ok = results["export_rel_err"] < 1e-4 and results["import_rel_err"] < 1e-4 and results["layernorm_refused"]
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
