#!/usr/bin/env python3
"""PyTorch reference of dtrain's GPT training step, to check dtrain's numbers and to time the same step.

The model is nanoGPT's (model.py) written functionally over dtrain's named tensors, with weights stored
[in, out] like GPT-2's Conv1D (y = x @ W + b). Initial weights come from a dtrain checkpoint directory
(manifest.json + params/<name>.bin, raw little-endian, C order), the hyperparameters from the checkpoint's stored
config (manifest "config"), the token windows from a batches file written by io.dtrain.bench.TorchComparison
(<name>.json describing <name>.bin: int32 little-endian [steps][micro_batches][micro_batch][seq_len + 1]).

The optimizer is torch.optim.AdamW itself (decay only on the kinds dtrain decays), clipping is
torch.nn.utils.clip_grad_norm_, the learning rate is dtrain's LrSchedule (nanoGPT's get_lr), and gradient
accumulation is the mean over micro-batches. Dropout cannot be compared (masks differ between frameworks), so a
checkpoint whose config has model.dropout > 0 is refused.

  check: run N steps, print one JSON object with per-step loss, grad norm (before clipping) and lr.
  speed: time full training steps (forward, backward, clip, AdamW), warm-up steps first, print median tokens/s.
  grads: per-tensor norms of step 1's gradient, to locate a disagreement.

Use the system python that has torch: /usr/bin/python3 gpt_reference.py check --checkpoint DIR --batches FILE.json
"""
import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

NUMPY_DTYPES = {"float32": "<f4", "float64": "<f8"}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def fail(message):
    print("gpt_reference.py: " + message, file=sys.stderr)
    sys.exit(2)


# ----------------------------------------------------------------------------------------------- inputs

def load_checkpoint(directory):
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        fail(f"{manifest_path} not found: pass a dtrain checkpoint step directory (e.g. <run>/checkpoints/step-000000)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if "config" not in manifest:
        fail(f"{manifest_path} has no 'config' entry: it was not written by dtrain's Trainer")
    tensors = {}
    for name, entry in manifest["tensors"].items():
        if entry["dtype"] not in NUMPY_DTYPES:
            fail(f"{manifest_path}: tensor {name} has dtype {entry['dtype']}, expected float32 or float64")
        path = directory / entry["file"]
        values = np.fromfile(path, dtype=NUMPY_DTYPES[entry["dtype"]])
        expected = int(np.prod(entry["shape"])) if entry["shape"] else 1
        if values.size != expected:
            fail(f"{path}: {values.size} values, manifest says shape {entry['shape']} ({expected} values)")
        tensors[name] = values.reshape(entry["shape"])
    return manifest, tensors


def load_batches(meta_path):
    meta_path = Path(meta_path)
    if not meta_path.is_file():
        fail(f"{meta_path} not found: pass the batches .json written by io.dtrain.bench.TorchComparison")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    shape = (meta["steps"], meta["micro_batches"], meta["micro_batch"], meta["window"])
    data = np.fromfile(meta_path.parent / meta["file"], dtype="<i4")
    if data.size != int(np.prod(shape)):
        fail(f"{meta_path.parent / meta['file']}: {data.size} int32 values, {meta_path} says {shape}")
    return meta, torch.from_numpy(data.reshape(shape).astype(np.int64))


class Config:
    """The keys of dtrain's resolved config the reference needs (manifest "config": section -> key -> value)."""

    def __init__(self, c):
        m, o, s, t = c["model"], c["optimizer"], c["schedule"], c["training"]
        self.vocab_size, self.seq_len, self.d_model = m["vocab_size"], m["seq_len"], m["d_model"]
        self.n_layer, self.n_head = m["n_layer"], m["n_head"]
        self.d_ff = m["d_ff"] if m["d_ff"] > 0 else 4 * m["d_model"]
        self.pre_norm = m["norm"] == "pre"
        self.activation = m["activation"]
        self.dropout = m["dropout"]
        self.tie_embeddings = m["tie_embeddings"]
        self.bias = m["bias"]
        self.layer_norm_eps = m["layer_norm_eps"]
        self.dtype = m["dtype"]
        self.lr, self.min_lr = o["lr"], o["min_lr"]
        self.beta1, self.beta2, self.eps = o["beta1"], o["beta2"], o["eps"]
        self.weight_decay = o["weight_decay"]
        self.decay_biases_and_norms = o["decay_biases_and_norms"]
        self.decay_embeddings = o["decay_embeddings"]
        self.grad_clip = o["grad_clip"]
        if o.get("lr_scaling", "none") != "none":
            print("gpt_reference.py: optimizer.lr_scaling is ignored (one process = data-parallel size 1)",
                  file=sys.stderr)
        self.warmup_steps, self.decay = s["warmup_steps"], s["decay"]
        tokens_per_step = t["global_batch"] * self.seq_len
        total = t["steps"] if t["steps"] > 0 else -(-t["tokens"] // tokens_per_step)
        self.decay_steps = s["decay_steps"] if s["decay_steps"] > 0 else total
        self.global_batch = t["global_batch"]

    def lr_at(self, step):
        """dtrain's io.dtrain.optim.LrSchedule (nanoGPT's get_lr) for 0-based step."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return self.lr
        if step >= self.decay_steps:
            return self.min_lr
        ratio = (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps)
        coeff = 0.5 * (1.0 + math.cos(math.pi * ratio)) if self.decay == "cosine" else 1.0 - ratio
        return self.min_lr + coeff * (self.lr - self.min_lr)


def kind_of(name):
    """dtrain's ParamKind of a checkpoint name (GptNames): decides the weight-decay group."""
    if name in ("wte", "wpe"):
        return "EMBEDDING"
    if ".ln_" in name or name.startswith("ln_f."):
        return "NORM"
    if name.endswith(".bias"):
        return "BIAS"
    return "MATRIX"


def decayed(kind, cfg):
    return {"MATRIX": True, "BIAS": cfg.decay_biases_and_norms, "NORM": cfg.decay_biases_and_norms,
            "EMBEDDING": cfg.decay_embeddings}[kind]


# ----------------------------------------------------------------------------------------------- model

def linear(p, x, prefix, cfg):
    y = x @ p[prefix + ".weight"]
    return y + p[prefix + ".bias"] if cfg.bias else y


def layer_norm(p, x, prefix, cfg):
    return F.layer_norm(x, (cfg.d_model,), p[prefix + ".weight"], p.get(prefix + ".bias"), cfg.layer_norm_eps)


def attention(p, x, layer, cfg, causal):
    B, T, D = x.shape
    H = cfg.n_head
    q, k, v = linear(p, x, f"h.{layer}.attn.c_attn", cfg).split(D, dim=2)
    q = q.view(B, T, H, D // H).transpose(1, 2)
    k = k.view(B, T, H, D // H).transpose(1, 2)
    v = v.view(B, T, H, D // H).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D // H))
    att = att.masked_fill(~causal[:T, :T], float("-inf"))
    att = F.softmax(att, dim=-1)
    y = (att @ v).transpose(1, 2).contiguous().view(B, T, D)
    return linear(p, y, f"h.{layer}.attn.c_proj", cfg)


def mlp(p, x, layer, cfg):
    h = linear(p, x, f"h.{layer}.mlp.c_fc", cfg)
    h = F.gelu(h, approximate="tanh") if cfg.activation == "gelu" else F.relu(h)
    return linear(p, h, f"h.{layer}.mlp.c_proj", cfg)


def gpt_loss(p, windows, cfg, causal):
    """Mean next-token cross-entropy of windows [B, seq_len + 1]."""
    inputs, targets = windows[:, :-1], windows[:, 1:]
    T = inputs.shape[1]
    x = p["wte"][inputs] + p["wpe"][:T]
    for layer in range(cfg.n_layer):
        ln_1, ln_2 = f"h.{layer}.ln_1", f"h.{layer}.ln_2"
        if cfg.pre_norm:
            x = x + attention(p, layer_norm(p, x, ln_1, cfg), layer, cfg, causal)
            x = x + mlp(p, layer_norm(p, x, ln_2, cfg), layer, cfg)
        else:
            x = layer_norm(p, x + attention(p, x, layer, cfg, causal), ln_1, cfg)
            x = layer_norm(p, x + mlp(p, x, layer, cfg), ln_2, cfg)
    if cfg.pre_norm:
        x = layer_norm(p, x, "ln_f", cfg)
    head = p["wte"].t() if cfg.tie_embeddings else p["lm_head.weight"]
    logits = x @ head
    return F.cross_entropy(logits.reshape(-1, cfg.vocab_size), targets.reshape(-1))


# ----------------------------------------------------------------------------------------------- training

class Reference:
    def __init__(self, checkpoint, dtype_name):
        self.manifest, arrays = load_checkpoint(checkpoint)
        self.cfg = Config(self.manifest["config"])
        if self.cfg.dropout > 0:
            fail(f"the checkpoint's config has model.dropout={self.cfg.dropout}: dropout masks cannot match across "
                 "frameworks; write the checkpoint with --set model.dropout=0")
        dtype = TORCH_DTYPES[dtype_name or self.cfg.dtype]
        self.params = {name: torch.tensor(a, dtype=dtype).requires_grad_(True) for name, a in arrays.items()}
        decay = [t for n, t in self.params.items() if decayed(kind_of(n), self.cfg)]
        no_decay = [t for n, t in self.params.items() if not decayed(kind_of(n), self.cfg)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.cfg.lr, betas=(self.cfg.beta1, self.cfg.beta2), eps=self.cfg.eps)
        self.causal = torch.ones(self.cfg.seq_len, self.cfg.seq_len, dtype=torch.bool).tril()

    def check_kinds(self, expected):
        """The batches file names dtrain's kind of each parameter: the decay groups must be the same."""
        mine = {n: kind_of(n) for n in self.params}
        if mine != expected:
            diff = sorted(n for n in set(mine) | set(expected) if mine.get(n) != expected.get(n))
            fail("parameter kinds differ from dtrain's for " + ", ".join(
                f"{n} (reference {mine.get(n)}, dtrain {expected.get(n)})" for n in diff[:5]))

    def train_step(self, step, micro_batches, exact_norm=True):
        """
        One optimizer step over micro_batches [A, B, T + 1]; returns (mean loss, grad norm before clipping,
        clip_grad_norm_'s norm, lr). The grad norm is accumulated in float64 from the gradients (as dtrain's
        GradClipper does): torch 1.13's float32 Tensor.norm() on CPU accumulates in float32 and is off by up to
        ~5e-5 relative on a 442k-element tensor (8e-6 on the whole gpt-cpu-small gradient), which would hide
        whether the gradients agree. Clipping itself is clip_grad_norm_, as a PyTorch user runs it.
        """
        self.optimizer.zero_grad(set_to_none=True)
        count = micro_batches.shape[0]
        loss_sum = 0.0
        for j in range(count):
            loss = gpt_loss(self.params, micro_batches[j], self.cfg, self.causal)
            (loss / count).backward()
            loss_sum += loss.item()
        params = list(self.params.values())
        norm = math.sqrt(sum(p.grad.double().square().sum().item() for p in params)) if exact_norm else None
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        clip_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()
        if not (math.isfinite(loss_sum) and math.isfinite(clip_norm)):
            fail(f"step {step + 1}: non-finite loss {loss_sum / count} or gradient norm {clip_norm}")
        lr = self.cfg.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return loss_sum / count, norm, clip_norm, lr


def blas_library():
    """The BLAS shared object actually mapped into this process (torch's build info only says 'generic')."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "blas" in line.lower()}
    except OSError:
        return "unknown"
    real = sorted(p for p in paths if "libopenblas" in p or "libmkl" in p or "libblis" in p)
    return ", ".join(real or sorted(paths)) or "none mapped"


def environment(args, ref):
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": str(
        next(iter(ref.params.values())).dtype).replace("torch.", ""), "blas": blas_library()}


def run_check(args):
    ref = Reference(args.checkpoint, args.dtype)
    meta, batches = load_batches(args.batches)
    ref.check_kinds(meta.get("param_kinds", {n: kind_of(n) for n in ref.params}))
    steps = args.steps or batches.shape[0]
    if steps > batches.shape[0]:
        fail(f"{args.batches} holds {batches.shape[0]} steps, {steps} requested")
    out = []
    for step in range(steps):
        loss, norm, clip_norm, lr = ref.train_step(step, batches[step])
        out.append({"step": step, "loss": loss, "grad_norm": norm, "clip_grad_norm": clip_norm, "lr": lr})
        print(f"torch step {step + 1}: loss {loss:.6f} grad norm {norm:.6f} lr {lr:.3e}", file=sys.stderr)
    print(json.dumps({"mode": "check", **environment(args, ref), "steps": out}))


def run_grads(args):
    """Per-tensor L2 norms of step 1's gradient (before clipping): to locate a disagreement."""
    ref = Reference(args.checkpoint, args.dtype)
    _, batches = load_batches(args.batches)
    micro_batches = batches[0]
    for j in range(micro_batches.shape[0]):
        (gpt_loss(ref.params, micro_batches[j], ref.cfg, ref.causal) / micro_batches.shape[0]).backward()
    norms = {name: t.grad.double().norm().item() for name, t in ref.params.items()}
    print(json.dumps({"mode": "grads", **environment(args, ref), "norms": norms}))


def run_speed(args):
    ref = Reference(args.checkpoint, args.dtype)
    _, batches = load_batches(args.batches)
    tokens = batches.shape[1] * batches.shape[2] * (batches.shape[3] - 1)
    times = []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        ref.train_step(step, batches[step % batches.shape[0]], exact_norm=False)
        dt = time.perf_counter() - t0
        if step >= args.warmup:
            times.append(dt)
        print(f"torch step {step + 1}: {dt * 1000:.1f} ms{' (warm-up)' if step < args.warmup else ''}",
              file=sys.stderr)
    median = statistics.median(times)
    print(json.dumps({"mode": "speed", **environment(args, ref), "warmup": args.warmup, "steps": args.steps,
                      "tokens_per_step": tokens, "step_ms": [t * 1000 for t in times],
                      "median_step_ms": median * 1000, "median_tokens_per_s": tokens / median}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["check", "speed", "grads"])
    parser.add_argument("--checkpoint", required=True, help="dtrain checkpoint step directory (manifest.json)")
    parser.add_argument("--batches", required=True, help="batches .json written by TorchComparison")
    parser.add_argument("--steps", type=int, default=0,
                        help="check: steps to run (0 = all in the batches file); speed: timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="speed: untimed warm-up steps")
    parser.add_argument("--dtype", choices=["float32", "float64"], help="compute dtype (default: the checkpoint's)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.mode == "check":
        run_check(args)
    elif args.mode == "grads":
        run_grads(args)
    else:
        args.steps = args.steps or 10
        run_speed(args)


if __name__ == "__main__":
    main()
