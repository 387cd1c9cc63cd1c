#!/usr/bin/env python3
"""PyTorch peer of the plwtune benchmarks: the same ops, sizes, dtypes and device, timed by torch.

Run by bench/run.ts (bench/peer.ts), which writes the cases as JSON on stdin:

    {"device": "cuda" | "cpu", "threads": 2,
     "cases": [{"id": "...", "kind": "ce" | "head" | "adamw" | "sgemm" | "train", ...,
                "time_ms": 2000, "min_iters": 5, "warmup": 2}, ...]}

and reads back ONE JSON line on stdout:

    {"torch": "2.x", "device": "...", "tf32": true,
     "results": {"<id>": {"ms": median, "mean_ms": ..., "n": ..., "what": "...", ...}},
     "errors": {"<id>": "message"}}

What is timed, per kind (the plwtune op it is the peer of is in brackets):
  ce     [weightedCrossEntropyBackward]  forward + backward w.r.t. logits (a leaf with
         requires_grad) of loss = (F.cross_entropy(x, targets, reduction='none') * weights).sum() / norm,
         x = logits.float() for bf16 logits (the usual recipe), logits itself for f32.
  head   [fusedHeadCrossEntropyBackward] the same loss with the head as separate ops:
         logits = hidden @ wte.T (in the input dtype; TF32 allowed for f32, as plwtune uses TF32),
         then the CE as above, backward for hidden and wte.
  adamw  [adamw: global norm + update]   torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
         then optimizer.step() of torch.optim.AdamW (fused=True on CUDA, torch's default
         implementation on CPU), two groups (decay on >= 2-D tensors, 0 on the rest).
         "step_ms" is the step alone, without the norm; on CPU "fused_ms" is clip + step with
         AdamW(fused=True), torch's fastest CPU path, for reference.
  sgemm  [matmul, CPU]                   torch.matmul(a, b or b.T, out=out), fp32.
  train  [GPT2Model.step, one micro-batch] one optimizer step of a minimal GPT-2 written below
         (nanoGPT-style: token + position embedding, pre-LN blocks with a fused qkv Linear,
         F.scaled_dot_product_attention(is_causal=True), GELU tanh, tied head) at the same
         config and batch shape, f32 (TF32 allowed on CUDA): loss =
         (F.cross_entropy(logits.view(-1, V), targets.view(-1), reduction='none') * w).sum() / w.sum(),
         backward, clip_grad_norm_(1.0), AdamW(lr, betas, eps; weight decay on >= 2-D params;
         fused=True on CUDA, torch's default on CPU).step(), zero_grad(set_to_none=True).
         Random tokens; w = lambda on the first promptLen positions of each row, 1 elsewhere.
         "ms" is eager f32. On CUDA also: "compile_ms" (torch.compile(model), compiled in the
         warm-up, outside the timing; "compile_error" if it fails), "bf16_ms" (eager under
         torch.autocast('cuda', dtype=torch.bfloat16)) and "bf16_compile_ms" (both: the fastest
         recipe), unless the case says compile=false; "peak_mem_bytes" is the eager f32 step's
         torch.cuda.max_memory_allocated.

Timing: CUDA with torch.cuda.Event pairs around each iteration after warm-up, a synchronize
after each (plwtune's calls also end synchronized), the median of the samples; CPU with
time.perf_counter. Each case runs at least min_iters times and until time_ms has passed.
"""
import json
import statistics
import sys
import time
import traceback


def log(msg):
    print(f"[torch_peer] {msg}", file=sys.stderr, flush=True)


def main():
    spec = json.loads(sys.stdin.read())
    import torch
    import torch.nn.functional as F

    device = spec["device"]
    if device == "cuda":
        if not torch.cuda.is_available():
            print(json.dumps({"torch": torch.__version__, "device": None, "results": {},
                              "errors": {"*": "torch.cuda.is_available() is False"}}))
            return
        torch.backends.cuda.matmul.allow_tf32 = True  # plwtune runs f32 GEMMs as TF32
        torch.backends.cudnn.allow_tf32 = True
        device_name = torch.cuda.get_device_name(0)
    else:
        threads = int(spec.get("threads") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        device_name = f"cpu ({torch.get_num_threads()} threads)"
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def time_it(fn, case):
        """Median ms of fn() over >= min_iters runs and >= time_ms of wall time, after warm-up."""
        for _ in range(max(1, int(case.get("warmup", 2)))):
            fn()
        sync()
        budget = float(case.get("time_ms", 2000)) / 1000.0
        min_iters = int(case.get("min_iters", 5))
        samples = []
        t_start = time.perf_counter()
        while len(samples) < min_iters or time.perf_counter() - t_start < budget:
            if device == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - t0) * 1000.0)
        return {"ms": statistics.median(samples), "mean_ms": statistics.fmean(samples),
                "min_ms": min(samples), "n": len(samples)}

    def generator(seed):
        g = torch.Generator(device=device)
        g.manual_seed(seed)
        return g

    def uniform(shape, scale, g, dtype=torch.float32):
        return ((torch.rand(shape, device=device, generator=g) * 2 - 1) * scale).to(dtype)

    def rows(N, V, g):
        targets = torch.randint(0, V, (N,), device=device, generator=g)
        u = torch.rand(N, device=device, generator=g)
        one, lam, zero = (torch.tensor(x, device=device) for x in (1.0, 0.1, 0.0))
        weights = torch.where(u < 0.3, lam, torch.where(u < 0.9, one, zero))  # 30% prompt, 60% completion, 10% pad
        norm = float(weights.sum().item()) or 1.0
        return targets, weights, norm

    def weighted_ce(logits, targets, weights, norm):
        x = logits if logits.dtype == torch.float32 else logits.float()
        return (F.cross_entropy(x, targets, reduction="none") * weights).sum() / norm

    def run_ce(case):
        N, V, dt = case["N"], case["V"], dtypes[case["dtype"]]
        g = generator(1)
        logits = uniform((N, V), 4.0, g, dt).requires_grad_()
        targets, weights, norm = rows(N, V, g)

        def step():
            logits.grad = None
            weighted_ce(logits, targets, weights, norm).backward()

        r = time_it(step, case)
        r["what"] = "F.cross_entropy(%s) fwd+bwd wrt logits" % ("logits" if dt == torch.float32 else "logits.float()")
        return r

    def run_head(case):
        N, C, V, dt = case["N"], case["C"], case["V"], dtypes[case["dtype"]]
        g = generator(3)
        hidden = uniform((N, C), 1.0, g, dt).requires_grad_()
        wte = uniform((V, C), 0.05, g, dt).requires_grad_()
        targets, weights, norm = rows(N, V, g)

        def step():
            hidden.grad = None
            wte.grad = None
            logits = hidden @ wte.t()
            weighted_ce(logits, targets, weights, norm).backward()

        r = time_it(step, case)
        r["what"] = "hidden @ wte.T, CE, backward (hidden, wte)"
        return r

    def run_adamw(case):
        g = generator(10)
        params = [torch.nn.Parameter(uniform(tuple(s), 0.02, g)) for s in case["shapes"]]
        for p in params:
            p.grad = uniform(tuple(p.shape), 1e-3, g)
        decay = case["decay"]
        groups = [{"params": [p for p, d in zip(params, decay) if d], "weight_decay": case["weightDecay"]},
                  {"params": [p for p, d in zip(params, decay) if not d], "weight_decay": 0.0}]
        kwargs = {"fused": True} if device == "cuda" else {}
        opt = torch.optim.AdamW(groups, lr=case["lr"], betas=(case["beta1"], case["beta2"]), eps=case["eps"], **kwargs)
        max_norm = case["maxGradNorm"]

        def clip_and_step():
            if max_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
            opt.step()

        r = time_it(clip_and_step, case)
        r["step_ms"] = time_it(opt.step, case)["ms"]
        impl = "fused=True" if device == "cuda" else "default implementation"
        if device == "cpu":
            # torch's CPU default is the per-tensor loop; its fused CPU kernel (torch >= 2.4) is
            # much faster: timed too, reported beside the default (its own optimizer state).
            try:
                opt = torch.optim.AdamW(groups, lr=case["lr"], betas=(case["beta1"], case["beta2"]), eps=case["eps"],
                                        fused=True)
                r["fused_ms"] = time_it(clip_and_step, case)["ms"]
            except Exception as e:  # older torch: no fused AdamW on CPU
                r["fused_error"] = f"{type(e).__name__}: {e}"
        r["what"] = f"clip_grad_norm_(foreach) + AdamW({impl}).step, {sum(p.numel() for p in params)} params"
        return r

    def run_sgemm(case):
        M, N, K, tb = case["M"], case["N"], case["K"], case["transB"]
        g = generator(20)
        a = uniform((M, K), 1.0, g)
        b = uniform((N, K) if tb else (K, N), 0.05, g)
        bb = b.t() if tb else b
        out = torch.empty((M, N), device=device)

        def step():
            torch.matmul(a, bb, out=out)

        r = time_it(step, case)
        r["what"] = "torch.matmul fp32" + (" (b transposed)" if tb else "")
        return r

    def build_gpt(case):
        """A minimal GPT-2 (nanoGPT-style) with GPT-2's initialization; forward returns the weighted loss."""
        nn = torch.nn
        L, NH, C, V, P = case["nLayer"], case["nHead"], case["nEmbd"], case["vocabSize"], case["nPositions"]

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.ln_1 = nn.LayerNorm(C)
                self.c_attn = nn.Linear(C, 3 * C)  # fused q, k, v
                self.c_proj = nn.Linear(C, C)
                self.ln_2 = nn.LayerNorm(C)
                self.c_fc = nn.Linear(C, 4 * C)
                self.mlp_proj = nn.Linear(4 * C, C)

            def forward(self, x):
                B, T, _ = x.shape
                q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
                q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
                return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

        class GPT(nn.Module):
            def __init__(self):
                super().__init__()
                self.wte = nn.Embedding(V, C)
                self.wpe = nn.Embedding(P, C)
                self.h = nn.ModuleList([Block() for _ in range(L)])
                self.ln_f = nn.LayerNorm(C)
                for name, p in self.named_parameters():
                    if name.endswith("bias"):
                        nn.init.zeros_(p)
                    elif ".ln_" in name or name.startswith("ln_"):
                        nn.init.ones_(p)
                    else:
                        std = 0.02 / (2 * L) ** 0.5 if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                        nn.init.normal_(p, 0.0, std)

            def forward(self, idx, targets, weights):
                T = idx.shape[1]
                x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
                for block in self.h:
                    x = block(x)
                logits = F.linear(self.ln_f(x), self.wte.weight)  # tied head
                ce = F.cross_entropy(logits.view(-1, V), targets.view(-1), reduction="none")
                return (ce * weights.view(-1)).sum() / weights.sum()

        return GPT().to(device)

    def run_train(case):
        B, T, V = case["B"], case["T"], case["vocabSize"]
        torch.manual_seed(1)
        model = build_gpt(case)
        params = list(model.parameters())
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": case["weightDecay"]}, {"params": no_decay, "weight_decay": 0.0}]
        kwargs = {"fused": True} if device == "cuda" else {}
        opt = torch.optim.AdamW(groups, lr=case["lr"], betas=(case["beta1"], case["beta2"]), eps=case["eps"], **kwargs)
        g = generator(7)
        idx = torch.randint(0, V, (B, T), device=device, generator=g)
        targets = torch.randint(0, V, (B, T), device=device, generator=g)
        weights = torch.ones((B, T), device=device)
        weights[:, : case["promptLen"]] = case["lambda"]
        max_norm = case["maxGradNorm"]

        def make_step(fn, bf16):
            def step():
                if bf16:
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        loss = fn(idx, targets, weights)
                else:
                    loss = fn(idx, targets, weights)
                loss.backward()
                if max_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, max_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss
            return step

        def short(e):
            msg = f"{type(e).__name__}: {e}".strip().split("\n")
            return (msg[0] if len(msg) == 1 else msg[0] + " ... " + msg[-1])[:400]

        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        r = time_it(make_step(model, False), case)
        loss = float(make_step(model, False)().item())
        if loss != loss:
            raise RuntimeError("eager f32 step gave a NaN loss")
        n = sum(p.numel() for p in params)
        r["what"] = (f"minimal GPT-2 ({n} params) eager f32, clip_grad_norm_ + AdamW("
                     f"{'fused=True' if device == 'cuda' else 'default implementation'}), loss {loss:.4f}")
        if device == "cuda":
            r["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
            r["what"] += " (TF32 allowed)"
        else:
            r["blas"] = "mkl" if torch.backends.mkl.is_available() else "not mkl (see torch.__config__.show())"
        if device != "cuda":
            return r

        def variant(key, fn, bf16, compiled):
            try:
                step = make_step(fn, bf16)
                if compiled:
                    t0 = time.perf_counter()
                    for _ in range(3):  # compiles the forward and backward graphs, outside the timing
                        step()
                    sync()
                    r["compile_warmup_s" if not bf16 else "bf16_compile_warmup_s"] = time.perf_counter() - t0
                r[key + "_ms"] = time_it(step, case)["ms"]
            except Exception as e:  # a failed compile or autocast must not lose the eager figure
                r[key + "_error"] = short(e)
                log(f"{case['id']} {key} failed:\n{traceback.format_exc()}")
            finally:
                opt.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()

        variant("bf16", model, True, False)
        if case.get("compile", True):
            try:
                cmodel = torch.compile(model)
            except Exception as e:
                r["compile_error"] = short(e)
                r["bf16_compile_error"] = "torch.compile failed (see compile_error)"
                return r
            variant("compile", cmodel, False, True)
            variant("bf16_compile", cmodel, True, True)
            try:
                torch._dynamo.reset()
            except Exception:
                pass
        return r

    runners = {"ce": run_ce, "head": run_head, "adamw": run_adamw, "sgemm": run_sgemm, "train": run_train}
    results, errors = {}, {}
    for case in spec["cases"]:
        cid = case["id"]
        try:
            log(f"{cid} ...")
            results[cid] = runners[case["kind"]](case)
            log(f"{cid}: {results[cid]['ms']:.3f} ms (median of {results[cid]['n']})")
        except Exception as e:  # one failing case (OOM, unsupported dtype) must not lose the others
            errors[cid] = f"{type(e).__name__}: {e}"
            log(f"{cid} failed:\n{traceback.format_exc()}")
        finally:
            if device == "cuda":
                torch.cuda.empty_cache()

    print(json.dumps({"torch": torch.__version__, "device": device_name,
                      "tf32": device == "cuda", "threads": torch.get_num_threads(),
                      "results": results, "errors": errors}), flush=True)


if __name__ == "__main__":
    main()
