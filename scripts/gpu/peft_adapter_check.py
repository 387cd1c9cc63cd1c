#!/usr/bin/env python3
"""Checks a LoRA adapter directory against PEFT itself (peft.PeftModel), and makes PEFT adapters
for plwtune to load. Runs anywhere torch + transformers + peft are installed (CPU is enough for
tiny models; no Node).

    python3 scripts/gpu/peft_adapter_check.py --base DIR --adapter DIR [--tol 1e-4] [--out FILE]
    python3 scripts/gpu/peft_adapter_check.py --base DIR --write-peft-adapter OUT [--seed 0]

--adapter (a directory plwtune wrote, or any PEFT LoRA adapter of that base): loads the base with
AutoModelForCausalLM.from_pretrained (float32, eager attention) and the adapter with
PeftModel.from_pretrained, then checks and reports (one JSON line on stdout, also to --out):
  - "loaded": PeftModel.from_pretrained returned;
  - "keys": the adapter file's tensors against the model's LoRA parameters: every file key (with
    the adapter name "default" put in, as PEFT does on load) is a LoRA parameter of the model and
    vice versa ("missing"/"unexpected" empty), every value loaded exactly ("max_abs_value_err" 0);
    PEFT's own warnings about missing or unexpected keys are collected in "warnings";
  - "resave_identical": PEFT saving the loaded adapter again (save_pretrained) writes the same
    adapter_model.safetensors bytes (the same key names, order, dtype, header and data);
  - "max_abs_logit_diff_merged": max |logits(PeftModel) - logits(merge_and_unload())| on a fixed
    token batch (float32 both; tolerance --tol, default 1e-4: the merged weight W + s·B·A rounds
    once per element where the unmerged path adds s·(x·Aᵀ)·Bᵀ after x·Wᵀ, a few f32 ulps of the
    logits apart);
  - "max_abs_logit_diff_base": the same against the base model without the adapter, which must be
    far from 0 (> 100 · tol) or the adapter was a no-op and proves nothing.
  - "max_abs_logit_diff_expected" when the adapter directory holds expected_logits.json (written by
    --write-peft-adapter, or by plwtune): PeftModel's logits against those.
Exit status 0 when all checks pass, 1 otherwise, 2 on bad arguments.

--write-peft-adapter OUT: a fresh PEFT LoRA adapter on the base — LoraConfig(r=4, lora_alpha=8,
target_modules="all-linear", init_lora_weights=False so B is not zero, task_type CAUSAL_LM),
seeded with --seed — saved with save_pretrained(OUT) (safetensors), and OUT/expected_logits.json:
    {"tokens": [[...], ...] (B rows of T ids), "shape": [B, T, V], "logits": [...] (B*T*V floats,
     row-major, PeftModel's float32 logits), "base": the base's absolute path,
     "peft": version, "transformers": version, "torch": version}
so that a plwtune test can load OUT with the base and compare its logits.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings


def log(msg):
    print(f"[peft_adapter_check] {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="a LoRA adapter directory against PEFT")
    p.add_argument("--base", required=True, help="the base model directory (config.json + safetensors)")
    p.add_argument("--adapter", help="the adapter directory to check")
    p.add_argument("--write-peft-adapter", metavar="OUT", help="write a fresh PEFT LoRA adapter and expected logits to OUT")
    p.add_argument("--seed", type=int, default=0, help="seed of --write-peft-adapter's adapter init (default 0)")
    p.add_argument("--tol", type=float, default=1e-4, help="largest max |logit| difference that passes (default 1e-4)")
    p.add_argument("--out", help="also write the JSON report here")
    args = p.parse_args(argv)
    if not args.adapter and not args.write_peft_adapter:
        p.error("give --adapter DIR, --write-peft-adapter OUT, or both")
    if not (args.tol > 0):
        p.error(f"--tol must be positive, got {args.tol}")
    return args


def load_base(torch, base):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def token_batch(torch, vocab, B=2, T=12, seed=1234):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (B, T), generator=g)


def logits_of(torch, model, tokens):
    with torch.no_grad():
        return model(input_ids=tokens).logits.float()


def lora_params(model):
    """The model's LoRA parameters by name (lora_A / lora_B of adapter "default")."""
    return {n: p for n, p in model.named_parameters() if ".lora_A." in n or ".lora_B." in n}


def file_key_to_param(key):
    """adapter_model.safetensors key -> the PeftModel parameter name (PEFT inserts the adapter name)."""
    for which in ("lora_A", "lora_B"):
        tail = f".{which}.weight"
        if key.endswith(tail):
            return key[: -len(tail)] + f".{which}.default.weight"
    return key


def check_adapter(args, torch, report):
    from peft import PeftModel
    from safetensors import safe_open

    adapter = os.path.abspath(args.adapter)
    weights = os.path.join(adapter, "adapter_model.safetensors")
    base_model = load_base(torch, args.base)
    tokens = token_batch(torch, base_model.config.vocab_size)
    base_logits = logits_of(torch, base_model, tokens)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base_model, adapter)
    model.eval()
    relevant = [str(w.message) for w in caught if any(s in str(w.message).lower() for s in ("missing", "unexpected", "mismatch"))]
    report["loaded"] = True
    report["warnings"] = relevant

    params = lora_params(model)
    with safe_open(weights, "pt") as f:
        file_keys = list(f.keys())
        metadata = f.metadata()
        mapped = {file_key_to_param(k): k for k in file_keys}
        missing = sorted(set(params) - set(mapped))       # LoRA parameters the file has no value for
        unexpected = sorted(set(mapped) - set(params))    # file tensors the model has no place for
        max_value_err = 0.0
        for name, key in mapped.items():
            if name in params:
                t = f.get_tensor(key).float()
                if tuple(t.shape) != tuple(params[name].shape):
                    unexpected.append(f"{key} shape {tuple(t.shape)} vs {tuple(params[name].shape)}")
                    continue
                max_value_err = max(max_value_err, (t - params[name].detach().float()).abs().max().item())
    report["keys"] = {"file": len(file_keys), "model_lora_params": len(params), "missing": missing[:10],
                      "unexpected": unexpected[:10], "max_abs_value_err": max_value_err, "metadata": metadata}

    tmp = tempfile.mkdtemp(prefix="peft-resave-")
    try:
        model.save_pretrained(tmp)
        with open(weights, "rb") as a, open(os.path.join(tmp, "adapter_model.safetensors"), "rb") as b:
            report["resave_identical"] = a.read() == b.read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    peft_logits = logits_of(torch, model, tokens)
    report["max_abs_logit_diff_base"] = (peft_logits - base_logits).abs().max().item()
    expected_file = os.path.join(adapter, "expected_logits.json")
    if os.path.exists(expected_file):
        with open(expected_file) as fh:
            exp = json.load(fh)
        t2 = torch.tensor(exp["tokens"])
        l2 = logits_of(torch, model, t2).reshape(-1)
        report["max_abs_logit_diff_expected"] = (l2 - torch.tensor(exp["logits"], dtype=torch.float32)).abs().max().item()
    merged = model.merge_and_unload()
    merged_logits = logits_of(torch, merged, tokens)
    report["max_abs_logit_diff_merged"] = (peft_logits - merged_logits).abs().max().item()
    report["max_abs_logit"] = peft_logits.abs().max().item()

    ok = (not relevant and not missing and not unexpected and max_value_err == 0.0 and report["resave_identical"]
          and report["max_abs_logit_diff_merged"] <= args.tol and report["max_abs_logit_diff_base"] > 100 * args.tol
          and report.get("max_abs_logit_diff_expected", 0.0) <= args.tol)
    report["ok"] = bool(ok)
    return ok


def write_peft_adapter(args, torch, report):
    import peft
    import transformers
    from peft import LoraConfig, get_peft_model

    out = os.path.abspath(args.write_peft_adapter)
    base_model = load_base(torch, args.base)
    torch.manual_seed(args.seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base_model, config)
    model.eval()
    model.save_pretrained(out)  # safetensors; base_model_name_or_path is the base directory as given
    tokens = token_batch(torch, base_model.config.vocab_size, seed=args.seed + 1234)
    logits = logits_of(torch, model, tokens)
    with open(os.path.join(out, "expected_logits.json"), "w") as fh:
        json.dump({"tokens": tokens.tolist(), "shape": list(logits.shape), "logits": logits.reshape(-1).tolist(),
                   "base": os.path.abspath(args.base), "peft": peft.__version__, "transformers": transformers.__version__,
                   "torch": torch.__version__}, fh)
    report["written"] = out
    report["written_tensors"] = len(lora_params(model))
    log(f"wrote {out}: {report['written_tensors']} LoRA tensors, logits {list(logits.shape)}")
    return True


def main(argv):
    args = parse_args(argv)
    import peft
    import torch
    import transformers

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    report = {"base": os.path.abspath(args.base), "peft": peft.__version__, "transformers": transformers.__version__,
              "torch": torch.__version__, "tol": args.tol}
    ok = True
    try:
        if args.write_peft_adapter:
            ok = write_peft_adapter(args, torch, report) and ok
        if args.adapter:
            report["adapter"] = os.path.abspath(args.adapter)
            ok = check_adapter(args, torch, report) and ok
    except Exception as exc:  # reported, not raised: the JSON line is the interface
        report["error"] = f"{type(exc).__name__}: {exc}"
        ok = False
    report["ok"] = bool(ok)
    line = json.dumps(report)
    print(line, flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(line + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
