#!/usr/bin/env python3
"""Checks plwtune's Llama-family logits against Hugging Face transformers, on the GPU machine
(torch + transformers there, no Node). The Node side (scripts/gpu/run.sh) saves each tiny model
with plwtune (config.json + model.safetensors) and writes a case file with the token ids and the
logits plwtune computed for them; this script loads each model with
AutoModelForCausalLM.from_pretrained (float32, eager attention, TF32 off), computes the logits of
the same ids and reports the errors.

    python3 scripts/gpu/llama_check.py [--out FILE] [--tol 1e-4] [--device auto|cpu|cuda]
        [--backend transformers|peer] [--dtype float32|float64] CASE.json [CASE.json ...]

A case file (JSON):
    {"name": "tiny-llama",                  optional, default: the file's stem
     "model_dir": "llama-dir",              relative to the case file's folder unless absolute
     "tokens": [[1, 5, 9, ...], ...],        B rows of T token ids (one example per row, no packing)
     "positions": [[0, 1, ...], ...],        optional position_ids (B, T); default 0..T-1
     "logits": [...]}                        plwtune's logits (B, T, V): flat (B*T*V, row-major) or nested

Printed (one JSON line on stdout) and written to --out:
    {"ok": true|false, "tol": 1e-4, "backend": "transformers", "transformers": "4.x", "torch": "2.x",
     "device": "...", "dtype": "float32",
     "cases": [{"name", "model_dir", "architecture", "shape": [B, T, V], "max_abs_err",
                "max_rel_err" (max |ours - hf| / max |hf|), "rel_l2_err" (||ours - hf|| / ||hf||, as
                test/support/reference.ts's relError), "argmax_agree" (fraction of positions whose
                argmax agrees), "ok" (max_rel_err <= tol)}],
     "errors": {"<name>": "message"}}
Exit status: 0 when every case is ok, 1 when one is not (or failed), 2 on bad arguments.

Tolerance: both sides compute in float32 (TF32 off here); plwtune's CPU and CUDA f32 logits
agree with a float64 forward to ~1e-6 relative on tiny models, transformers' likewise, so 1e-4
leaves a wide margin while a wrong RoPE pairing, head mapping or norm is off by > 1e-2.

--backend peer: instead of transformers, bench/torch_peer.py's plain-torch Llama-family model
(build_llama, the same parameter names) loaded from the same files: an independent check where
transformers is not installed, and how this script is tested off the GPU machine.
"""
import argparse
import json
import math
import os
import struct
import sys


def log(msg):
    print(f"[llama_check] {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="plwtune Llama-family logits against Hugging Face transformers")
    p.add_argument("cases", nargs="+", metavar="CASE.json", help="case files (see the module docstring)")
    p.add_argument("--out", help="also write the JSON report here")
    p.add_argument("--tol", type=float, default=1e-4, help="largest max_rel_err that passes (default 1e-4)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available")
    p.add_argument("--backend", choices=["transformers", "peer"], default="transformers")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="the reference model's dtype")
    args = p.parse_args(argv)
    if not (args.tol > 0):
        p.error(f"--tol must be positive, got {args.tol}")
    return args


def read_case(path):
    """The case file, validated; model_dir made absolute. Raises ValueError with the reason."""
    with open(path) as f:
        case = json.load(f)
    if not isinstance(case, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for key in ("model_dir", "tokens", "logits"):
        if key not in case:
            raise ValueError(f'{path}: missing field "{key}"')
    tokens = case["tokens"]
    if (not isinstance(tokens, list) or not tokens or not all(isinstance(r, list) and r for r in tokens)
            or not all(isinstance(t, int) and t >= 0 for r in tokens for t in r)):
        raise ValueError(f'{path}: "tokens" must be a non-empty list of non-empty rows of non-negative ints')
    T = len(tokens[0])
    if any(len(r) != T for r in tokens):
        raise ValueError(f'{path}: every row of "tokens" must have the same length ({T})')
    positions = case.get("positions")
    if positions is not None and (len(positions) != len(tokens) or any(len(r) != T for r in positions)):
        raise ValueError(f'{path}: "positions" must have the shape of "tokens" ({len(tokens)} x {T})')
    model_dir = case["model_dir"]
    if not os.path.isabs(model_dir):
        model_dir = os.path.join(os.path.dirname(os.path.abspath(path)), model_dir)
    name = case.get("name") or os.path.splitext(os.path.basename(path))[0]
    return {"name": name, "model_dir": model_dir, "tokens": tokens, "positions": positions, "logits": case["logits"]}


def flatten(x):
    """A flat list of floats from a flat or nested list."""
    if not isinstance(x, list):
        return [float(x)]
    if all(not isinstance(v, list) for v in x):
        return [float(v) for v in x]
    out = []
    for v in x:
        out.extend(flatten(v))
    return out


def compare(ours, ref, V, tol):
    """Errors of ours (flat B*T*V) against ref (flat, the reference model's logits)."""
    if len(ours) != len(ref):
        raise ValueError(f"plwtune gave {len(ours)} logits, the reference {len(ref)}")
    if any(not math.isfinite(v) for v in ours):
        return {"max_abs_err": math.inf, "max_rel_err": math.inf, "rel_l2_err": math.inf, "argmax_agree": 0.0, "ok": False}
    max_abs = max(abs(a - b) for a, b in zip(ours, ref))
    max_ref = max(abs(b) for b in ref)
    num = sum((a - b) ** 2 for a, b in zip(ours, ref))
    den = sum(b * b for b in ref)
    rows = len(ref) // V
    agree = 0
    for r in range(rows):
        a, b = ours[r * V:(r + 1) * V], ref[r * V:(r + 1) * V]
        agree += a.index(max(a)) == b.index(max(b))
    max_rel = max_abs / max_ref if max_ref > 0 else max_abs
    return {"max_abs_err": max_abs, "max_rel_err": max_rel, "rel_l2_err": math.sqrt(num / den) if den > 0 else math.sqrt(num),
            "argmax_agree": agree / rows, "ok": max_rel <= tol}


def read_safetensors(path, torch):
    """{name: tensor} of a .safetensors file, without the safetensors package."""
    dtypes = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32}
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = bytearray(data[8 + n + b:8 + n + e])
        t = torch.frombuffer(buf, dtype=dtypes[info["dtype"]]) if e > b else torch.empty(0, dtype=dtypes[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def load_state(model_dir, torch):
    """Every tensor of the model dir's *.safetensors files."""
    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    if not files:
        raise ValueError(f"{model_dir}: no .safetensors file")
    try:
        from safetensors.torch import load_file
    except ImportError:
        load_file = None
    state = {}
    for f in files:
        state.update(load_file(os.path.join(model_dir, f)) if load_file else read_safetensors(os.path.join(model_dir, f), torch))
    return state


def spec_from_config(cfg):
    """LlamaRefSpec's fields from a config.json, by transformers' rules per model_type (as ts/arch/llama.ts reads them)."""
    arch = (cfg.get("architectures") or [None])[0]
    family = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3",
              "MistralForCausalLM": "mistral"}.get(arch, cfg.get("model_type"))
    if family not in ("llama", "qwen2", "qwen3", "mistral"):
        raise ValueError(f"not a Llama-family config: architectures {cfg.get('architectures')}, model_type {cfg.get('model_type')}")
    H = cfg["num_attention_heads"]
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0)) if cfg.get("rope_parameters") else cfg.get("rope_theta", 10000.0)
    bias = bool(cfg.get("attention_bias", False))
    spec = {
        "vocabSize": cfg["vocab_size"], "hidden": cfg["hidden_size"], "layers": cfg["num_hidden_layers"], "heads": H,
        "kvHeads": cfg.get("num_key_value_heads") or H, "headDim": cfg.get("head_dim") or cfg["hidden_size"] // H,
        "intermediate": cfg["intermediate_size"], "rmsEps": cfg.get("rms_norm_eps", 1e-6), "ropeTheta": theta,
        "tied": bool(cfg.get("tie_word_embeddings", False)),
        "qkvBias": True if family == "qwen2" else bias, "oBias": False if family in ("qwen2", "mistral") else bias,
        "mlpBias": bool(cfg.get("mlp_bias", False)) if family == "llama" else False, "qkNorm": family == "qwen3",
    }
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "llama3":
        spec["ropeScaling"] = {"type": "llama3", "factor": rope["factor"], "lowFreqFactor": rope["low_freq_factor"],
                               "highFreqFactor": rope["high_freq_factor"],
                               "originalMaxPositionEmbeddings": rope["original_max_position_embeddings"]}
    elif kind != "default":
        raise ValueError(f"rope type {kind} is not supported by the peer backend")
    return spec, arch or family


def load_peer(model_dir, torch, device, dtype):
    """bench/torch_peer.py's build_llama with the model dir's weights."""
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    spec_ = importlib.util.spec_from_file_location("torch_peer", os.path.join(here, "..", "..", "bench", "torch_peer.py"))
    peer = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(peer)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    spec, arch = spec_from_config(cfg)
    model = peer.build_llama(spec, device, dtype=dtype, attn="eager")
    state = {k: v for k, v in load_state(model_dir, torch).items() if not k.endswith("rotary_emb.inv_freq")}
    if spec["tied"]:
        state.pop("lm_head.weight", None)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    model.eval()

    def run(ids, pos):
        return model(ids, positions=pos)
    return run, arch


def load_transformers(model_dir, torch, device, dtype):
    """AutoModelForCausalLM in `dtype`, eager attention; every weight must come from the files."""
    from transformers import AutoModelForCausalLM
    kw = {"attn_implementation": "eager", "output_loading_info": True}
    try:
        model, info = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, **kw)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        model, info = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype, **kw)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("inv_freq") and not (tied and k == "lm_head.weight")]
    if missing:
        raise ValueError(f"{model_dir}: transformers initialized {len(missing)} weights the files lack: {missing[:5]}")
    if info.get("unexpected_keys"):
        log(f"{model_dir}: transformers ignored {info['unexpected_keys'][:5]}")
    model.to(device=device, dtype=dtype).eval()
    arch = (model.config.architectures or [type(model).__name__])[0]

    def run(ids, pos):
        return model(input_ids=ids, position_ids=pos, use_cache=False).logits
    return run, arch


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda":
        if not torch.cuda.is_available():
            print("--device cuda: torch.cuda.is_available() is False", file=sys.stderr)
            return 2
        torch.backends.cuda.matmul.allow_tf32 = False  # plain float32 GEMMs on the reference side
        torch.backends.cudnn.allow_tf32 = False
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    report = {"ok": True, "tol": args.tol, "backend": args.backend, "torch": torch.__version__, "transformers": None,
              "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "dtype": args.dtype,
              "cases": [], "errors": {}}
    if args.backend == "transformers":
        try:
            import transformers
            report["transformers"] = transformers.__version__
        except ImportError as e:
            report["ok"] = False
            report["errors"]["*"] = f"transformers is not importable: {e}"
    loader = load_transformers if args.backend == "transformers" else load_peer

    for path in args.cases:
        name = os.path.splitext(os.path.basename(path))[0]
        try:
            if report["errors"].get("*"):
                raise RuntimeError(report["errors"]["*"])
            case = read_case(path)
            name = case["name"]
            run, arch = loader(case["model_dir"], torch, device, dtype)
            ids = torch.tensor(case["tokens"], dtype=torch.int64, device=device)
            pos = torch.tensor(case["positions"], dtype=torch.int64, device=device) if case["positions"] else None
            with torch.no_grad():
                logits = run(ids, pos)
            B, T, V = logits.shape
            ref = logits.double().cpu().reshape(-1).tolist()
            row = {"name": name, "model_dir": case["model_dir"], "architecture": arch, "shape": [B, T, V]}
            row.update(compare(flatten(case["logits"]), ref, V, args.tol))
            report["cases"].append(row)
            log(f"{name} ({arch}, {B}x{T}x{V}): max_rel_err {row['max_rel_err']:.3e}, rel_l2_err {row['rel_l2_err']:.3e}, "
                f"argmax agree {row['argmax_agree']:.3f} -> {'ok' if row['ok'] else 'FAIL'}")
            report["ok"] = report["ok"] and row["ok"]
        except Exception as e:  # one bad case must not lose the others
            report["errors"][name] = f"{type(e).__name__}: {e}"
            report["ok"] = False
            log(f"{name}: {type(e).__name__}: {e}")
    text = json.dumps(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text, flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
