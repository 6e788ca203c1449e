#!/usr/bin/env python3
"""Hugging Face's GPT-2 (transformers' GPT2LMHeadModel) rewritten in plain PyTorch with the same module structure,
parameter names and shapes, to check `dtrain export --format hf` without transformers or network access.

Module tree, as transformers' modeling_gpt2.py builds it (a state_dict key is the path of a parameter in it):
  transformer.wte (Embedding[vocab, n_embd]), transformer.wpe (Embedding[n_positions, n_embd]),
  transformer.h.{i}: ln_1 (LayerNorm), attn.c_attn / attn.c_proj (Conv1D: weight [in, out], y = x @ W + b),
                     ln_2, mlp.c_fc / mlp.c_proj (Conv1D), mlp.act (config.activation_function),
  transformer.ln_f (LayerNorm), lm_head (Linear[n_embd -> vocab], no bias; tied to transformer.wte when
  config.tie_word_embeddings).
Loading follows from_pretrained: hyperparameters from config.json, tensors from model.safetensors by name
(load_state_dict; the only key allowed to be missing is lm_head.weight of a tied model, none may be unexpected).

  logits: load DIR, run it on the token rows of a JSON file, compare with dtrain's logits (float32 little-endian
          [rows, tokens, vocab]); prints one JSON object; exit code 1 when the largest difference exceeds --tol.

Use the system python that has torch: /usr/bin/python3 hf_gpt2.py logits --model DIR --tokens T.json --expected L.bin
"""
import argparse
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

SAFETENSORS_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def fail(message):
    print("hf_gpt2.py: " + message, file=sys.stderr)
    sys.exit(2)


def read_safetensors(path):
    """The tensors of a safetensors file by name: 8-byte little-endian header length, JSON header, raw data."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    start = 8 + n
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in SAFETENSORS_DTYPES:
            fail(f"{path}: {name} has dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        values = np.frombuffer(data[start + begin:start + end], dtype=SAFETENSORS_DTYPES[entry["dtype"]])
        tensors[name] = torch.from_numpy(values.copy().reshape(entry["shape"]))
    return header.get("__metadata__", {}), tensors


class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D: a linear layer whose weight is stored [in, out]."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class NewGELU(nn.Module):
    """transformers' "gelu_new": the tanh approximation GPT-2 uses."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACTIVATIONS = {"gelu_new": NewGELU, "gelu_pytorch_tanh": NewGELU, "relu": nn.ReLU}


class GPT2Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        n_positions = config["n_positions"]
        self.register_buffer("bias", torch.tril(torch.ones((n_positions, n_positions), dtype=torch.bool))
                             .view(1, 1, n_positions, n_positions), persistent=False)
        self.embed_dim = config["n_embd"]
        self.num_heads = config["n_head"]
        self.head_dim = self.embed_dim // self.num_heads
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_dropout = nn.Dropout(config["attn_pdrop"])
        self.resid_dropout = nn.Dropout(config["resid_pdrop"])

    def _split_heads(self, x):
        return x.view(x.size()[:-1] + (self.num_heads, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, hidden_states):
        query, key, value = self.c_attn(hidden_states).split(self.embed_dim, dim=2)
        query, key, value = self._split_heads(query), self._split_heads(key), self._split_heads(value)
        attn_weights = torch.matmul(query, key.transpose(-1, -2)) / (value.size(-1) ** 0.5)
        t = query.size(-2)
        causal_mask = self.bias[:, :, :t, :t]
        mask_value = torch.finfo(attn_weights.dtype).min
        attn_weights = torch.where(causal_mask, attn_weights, torch.full([], mask_value, dtype=attn_weights.dtype))
        attn_weights = self.attn_dropout(nn.functional.softmax(attn_weights, dim=-1))
        out = torch.matmul(attn_weights, value).permute(0, 2, 1, 3).contiguous()
        out = out.view(out.size()[:-2] + (self.embed_dim,))
        return self.resid_dropout(self.c_proj(out))


class GPT2MLP(nn.Module):
    def __init__(self, inner, config):
        super().__init__()
        self.c_fc = Conv1D(inner, config["n_embd"])
        self.c_proj = Conv1D(config["n_embd"], inner)
        self.act = ACTIVATIONS[config["activation_function"]]()
        self.dropout = nn.Dropout(config["resid_pdrop"])

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        d = config["n_embd"]
        inner = config.get("n_inner") or 4 * d
        self.ln_1 = nn.LayerNorm(d, eps=config["layer_norm_epsilon"])
        self.attn = GPT2Attention(config)
        self.ln_2 = nn.LayerNorm(d, eps=config["layer_norm_epsilon"])
        self.mlp = GPT2MLP(inner, config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config["vocab_size"], config["n_embd"])
        self.wpe = nn.Embedding(config["n_positions"], config["n_embd"])
        self.drop = nn.Dropout(config["embd_pdrop"])
        self.h = nn.ModuleList([GPT2Block(config) for _ in range(config["n_layer"])])
        self.ln_f = nn.LayerNorm(config["n_embd"], eps=config["layer_norm_epsilon"])

    def forward(self, input_ids):
        positions = torch.arange(input_ids.size(-1), dtype=torch.long).unsqueeze(0)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config["n_embd"], config["vocab_size"], bias=False)

    def forward(self, input_ids):
        return self.lm_head(self.transformer(input_ids))

    @classmethod
    def from_pretrained(cls, directory):
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "gpt2" or config.get("architectures") != ["GPT2LMHeadModel"]:
            fail(f"{directory}/config.json: model_type {config.get('model_type')}, architectures {config.get('architectures')}")
        metadata, state = read_safetensors(directory / "model.safetensors")
        if metadata.get("format") not in ("pt", "tf", "flax", "mlx"):
            fail(f"{directory}/model.safetensors: __metadata__.format is {metadata.get('format')!r}; transformers refuses it")
        dtype = TORCH_DTYPES[config.get("torch_dtype", "float32")]
        model = cls(config).to(dtype)
        result = model.load_state_dict(state, strict=False)
        tied = config.get("tie_word_embeddings", True)
        allowed_missing = {"lm_head.weight"} if tied else set()
        if set(result.missing_keys) - allowed_missing or result.unexpected_keys:
            fail(f"loading {directory}: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
        for name, tensor in state.items():
            if tensor.dtype != dtype:
                fail(f"{name} is {tensor.dtype}, config.json says torch_dtype {config.get('torch_dtype')}")
        if tied:
            model.lm_head.weight = model.transformer.wte.weight
        model.loaded_keys = sorted(state)
        return model.eval()


def logits_command(args):
    model = GPT2LMHeadModel.from_pretrained(args.model)
    rows = json.loads(Path(args.tokens).read_text(encoding="utf-8"))["tokens"]
    ids = torch.tensor(rows, dtype=torch.long)
    with torch.no_grad():
        ours = model(ids).to(torch.float32).numpy()
    expected = np.fromfile(args.expected, dtype="<f4")
    if expected.size != ours.size:
        fail(f"{args.expected}: {expected.size} values, the model gives {ours.shape}")
    diff = float(np.max(np.abs(expected.reshape(ours.shape) - ours)))
    print(json.dumps({"shape": list(ours.shape), "max_abs_diff": diff, "tolerance": args.tol,
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "loaded_keys": model.loaded_keys}))
    return 0 if diff <= args.tol else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("logits", help="compare this model's logits with dtrain's")
    p.add_argument("--model", required=True, help="the directory dtrain export --format hf wrote")
    p.add_argument("--tokens", required=True, help='JSON file {"tokens": [[id, ...], ...]}')
    p.add_argument("--expected", required=True, help="dtrain's logits, float32 little-endian [rows, tokens, vocab]")
    p.add_argument("--tol", type=float, default=1e-5, help="largest absolute difference allowed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sys.exit(logits_command(args))


if __name__ == "__main__":
    main()
