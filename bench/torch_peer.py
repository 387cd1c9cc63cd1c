#!/usr/bin/env python3
"""PyTorch peer of the plwtune benchmarks: the same ops, sizes, dtypes and device, timed by torch.

Run by bench/run.ts (bench/peer.ts), which writes the cases as JSON on stdin:

    {"device": "cuda" | "cpu", "threads": 2,
     "cases": [{"id": "...", "kind": "ce" | "head" | "adamw" | "sgemm" | "attn" | "train", ...,
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
  attn   [flashAttentionForward + Backward] F.scaled_dot_product_attention(q, k, v, is_causal=True)
         forward + backward(dout), q (B,NH,T,hs), k and v (B,NKV,T,hs) (enable_gqa=True when
         NKV < NH), in the case's dtype; torch chooses its backend (flash or cuDNN on CUDA bf16);
         "what" names the first fused CUDA backend that accepts the inputs.
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
         With "arch": "llama" the case carries LlamaRefSpec's fields (test/support/llama-reference.ts:
         vocabSize, hidden, layers, heads, kvHeads, headDim, intermediate, rmsEps, ropeTheta,
         ropeScaling, tied, qkvBias, oBias, mlpBias, qkNorm) and the model is build_llama below: a
         Llama-family decoder in plain torch as transformers computes it (RMSNorm with float32
         statistics, half-split RoPE from float32 angles, optional Qwen3 q/k norm, GQA by repeat_kv
         then F.scaled_dot_product_attention(is_causal=True), SwiGLU MLP, tied or untied head,
         optional biases), transformers' initialization; the same loss, optimizer and variants.
         "gqa": "sdpa" in the case passes enable_gqa=True to SDPA instead of repeating K and V.

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


def build_llama(case, device="cpu", dtype=None, attn="sdpa"):
    """A Llama-family decoder in plain torch, computing what transformers' modeling_llama.py /
    modeling_qwen2.py / modeling_qwen3.py compute, with their parameter names (state_dict keys
    model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ..., lm_head.weight when
    untied), so a Hugging Face checkpoint loads into it with load_state_dict.

    case: LlamaRefSpec's fields (test/support/llama-reference.ts): vocabSize, hidden, layers, heads,
    kvHeads, headDim, intermediate, rmsEps, ropeTheta, ropeScaling ({type: 'llama3', factor,
    lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings} or absent), tied, qkvBias, oBias,
    mlpBias, qkNorm. Optional "gqa": "repeat" (default: repeat_kv, as transformers' eager and
    sdpa paths do) or "sdpa" (F.scaled_dot_product_attention(enable_gqa=True), torch >= 2.5).
    dtype: the parameters' dtype (float32 default; float64 for reference checks, which also
    computes inv_freq and cos/sin in float64 where transformers uses float32).
    attn: "sdpa" (F.scaled_dot_product_attention) or "eager" (matmul, additive mask, softmax in
    at least float32, as transformers' eager_attention_forward).
    Initialization as transformers' _init_weights: normal(0, 0.02) for Linear and Embedding
    weights, zero biases, unit norm weights.
    forward(idx (B, T) int64, targets=None, weights=None, positions=None, segments=None): logits
    (B, T, V) without targets; with them the weighted loss
    (F.cross_entropy(logits, targets, reduction='none') * weights).sum() / weights.sum().
    positions (B, T) default 0..T-1; segments (B, T): packed rows, attention stays in a segment.
    """
    import math

    import torch
    import torch.nn.functional as F

    nn = torch.nn
    dtype = dtype or torch.float32
    V, C, L = case["vocabSize"], case["hidden"], case["layers"]
    H, KV, D, FF = case["heads"], case["kvHeads"], case["headDim"], case["intermediate"]
    eps, theta = float(case["rmsEps"]), float(case["ropeTheta"])
    if H % KV != 0:
        raise ValueError(f"heads ({H}) must be a multiple of kvHeads ({KV})")
    n_rep = H // KV
    gqa = case.get("gqa", "repeat")
    rope_dtype = torch.float64 if dtype == torch.float64 else torch.float32

    def inv_freq_of():
        # transformers: 1 / theta ** (arange(0, D, 2).float() / D) in float32, then the llama3 rule.
        inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).to(rope_dtype) / D))
        sc = case.get("ropeScaling")
        if sc:
            factor, low, high = float(sc["factor"]), float(sc["lowFreqFactor"]), float(sc["highFreqFactor"])
            old = float(sc["originalMaxPositionEmbeddings"])
            wavelen = 2 * math.pi / inv
            scaled = torch.where(wavelen > old / low, inv / factor, inv)
            smooth = (old / wavelen - low) / (high - low)
            blended = (1 - smooth) * scaled / factor + smooth * scaled
            medium = (wavelen >= old / high) & (wavelen <= old / low)
            inv = torch.where(medium, blended, scaled)
        return inv

    class RMSNorm(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n, dtype=dtype))

        def forward(self, x):
            # transformers: float32 statistics, the normalized value cast back, then the weight.
            in_dtype = x.dtype
            h = x.to(torch.promote_types(in_dtype, torch.float32))
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
            return self.weight * h.to(in_dtype)

    def rotate_half(x):
        return torch.cat((-x[..., D // 2:], x[..., : D // 2]), dim=-1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(C, H * D, bias=case["qkvBias"], dtype=dtype)
            self.k_proj = nn.Linear(C, KV * D, bias=case["qkvBias"], dtype=dtype)
            self.v_proj = nn.Linear(C, KV * D, bias=case["qkvBias"], dtype=dtype)
            self.o_proj = nn.Linear(H * D, C, bias=case["oBias"], dtype=dtype)
            if case["qkNorm"]:
                self.q_norm = RMSNorm(D)
                self.k_norm = RMSNorm(D)

        def forward(self, x, cos, sin, mask):
            B, T, _ = x.shape
            q = self.q_proj(x).view(B, T, H, D)
            k = self.k_proj(x).view(B, T, KV, D)
            v = self.v_proj(x).view(B, T, KV, D).transpose(1, 2)
            if case["qkNorm"]:  # Qwen3: per head, before RoPE
                q, k = self.q_norm(q), self.k_norm(k)
            q, k = q.transpose(1, 2), k.transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if gqa != "sdpa" or attn == "eager":
                k = k.repeat_interleave(n_rep, dim=1) if n_rep > 1 else k  # = repeat_kv
                v = v.repeat_interleave(n_rep, dim=1) if n_rep > 1 else v
            if attn == "eager":
                w = torch.matmul(q, k.transpose(2, 3)) * D ** -0.5
                w = w.masked_fill(~mask, float("-inf"))
                w = torch.softmax(w, dim=-1, dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
                y = torch.matmul(w, v)
            else:
                kw = {"enable_gqa": True} if gqa == "sdpa" and n_rep > 1 else {}
                if mask is None:
                    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=D ** -0.5, **kw)
                else:
                    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=D ** -0.5, **kw)
            return self.o_proj(y.transpose(1, 2).reshape(B, T, H * D))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj = nn.Linear(C, FF, bias=case["mlpBias"], dtype=dtype)
            self.up_proj = nn.Linear(C, FF, bias=case["mlpBias"], dtype=dtype)
            self.down_proj = nn.Linear(FF, C, bias=case["mlpBias"], dtype=dtype)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm = RMSNorm(C)
            self.self_attn = Attention()
            self.post_attention_layernorm = RMSNorm(C)
            self.mlp = MLP()

        def forward(self, x, cos, sin, mask):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(V, C, dtype=dtype)
            self.layers = nn.ModuleList([Layer() for _ in range(L)])
            self.norm = RMSNorm(C)

    class LlamaLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Inner()
            if not case["tied"]:
                self.lm_head = nn.Linear(C, V, bias=False, dtype=dtype)
            self.register_buffer("inv_freq", inv_freq_of(), persistent=False)
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):
                    nn.init.ones_(p)
                elif name.endswith(".bias"):
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, 0.0, 0.02)

        def forward(self, idx, targets=None, weights=None, positions=None, segments=None):
            B, T = idx.shape
            x = self.model.embed_tokens(idx)
            if positions is None:
                positions = torch.arange(T, device=idx.device).unsqueeze(0).expand(B, T)
            # transformers: angles and cos/sin in float32 with autocast off, then cast to the activations' dtype.
            with torch.autocast(idx.device.type, enabled=False):
                freqs = positions.to(rope_dtype).unsqueeze(-1) * self.inv_freq.to(rope_dtype)
                emb = torch.cat((freqs, freqs), dim=-1)
                cos, sin = emb.cos().to(x.dtype).unsqueeze(1), emb.sin().to(x.dtype).unsqueeze(1)
            mask = None
            if segments is not None or attn == "eager":
                causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
                mask = causal.expand(B, 1, T, T)
                if segments is not None:
                    mask = mask & (segments[:, None, :, None] == segments[:, None, None, :])
            for layer in self.model.layers:
                x = layer(x, cos, sin, mask)
            x = self.model.norm(x)
            logits = F.linear(x, self.model.embed_tokens.weight if case["tied"] else self.lm_head.weight)
            if targets is None:
                return logits
            ce = F.cross_entropy(logits.view(-1, V), targets.view(-1), reduction="none")
            return (ce * weights.view(-1)).sum() / weights.sum()

    return LlamaLM().to(device)


def add_lora(model, r, alpha):
    """PEFT's LoRA in plain torch (the peer of plwtune's --lora-r): freezes every parameter,
    then wraps each linear layer of the blocks (not the head) as
    base(x) + (x A^T) B^T * alpha / r, A Kaiming-uniform (a = sqrt(5)), B zeros."""
    import math
    import torch
    nn = torch.nn

    class LoraLinear(nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base
            kw = {"dtype": base.weight.dtype, "device": base.weight.device}
            self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **kw))
            self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **kw))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.scaling = alpha / r

        def forward(self, x):
            return self.base(x) + (x @ self.lora_A.t()) @ self.lora_B.t() * self.scaling

    for p in model.parameters():
        p.requires_grad_(False)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and name != "lm_head":
                setattr(module, name, LoraLinear(child))


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
        llama = case.get("arch") == "llama"
        model = build_llama(case, device) if llama else build_gpt(case)
        if case.get("lora"):
            add_lora(model, case["lora"]["r"], case["lora"]["alpha"])
        params = [p for p in model.parameters() if p.requires_grad]
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
        arch = (f"Llama-family (plain torch, GQA {case['heads']}/{case['kvHeads']}, {case.get('gqa', 'repeat')})"
                if llama else "minimal GPT-2")
        if case.get("lora"):
            arch += f" + LoRA r={case['lora']['r']} on every linear layer, base frozen"
        r["what"] = (f"{arch} ({n} trainable params) eager f32, clip_grad_norm_ + AdamW("
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

    def run_attn(case):
        B, T, NH, NKV, hs, dt = case["B"], case["T"], case["NH"], case["NKV"], case["hs"], dtypes[case["dtype"]]
        g = generator(40)
        q = uniform((B, NH, T, hs), 1.0, g, dt).requires_grad_()
        k = uniform((B, NKV, T, hs), 1.0, g, dt).requires_grad_()
        v = uniform((B, NKV, T, hs), 1.0, g, dt).requires_grad_()
        dout = uniform((B, NH, T, hs), 0.01, g, dt)
        gqa = {"enable_gqa": True} if NKV != NH else {}

        def step():
            q.grad = k.grad = v.grad = None
            F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa).backward(dout)

        r = time_it(step, case)
        backend = ""
        if device == "cuda":
            # which fused backend torch would take (the first that accepts these inputs)
            try:
                from torch.nn.attention import SDPBackend, sdpa_kernel
                for name, b in (("flash", SDPBackend.FLASH_ATTENTION), ("cuDNN", SDPBackend.CUDNN_ATTENTION),
                                ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
                    try:
                        with sdpa_kernel([b]):
                            F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)
                        backend = f", {name} backend available"
                        break
                    except RuntimeError:
                        continue
            except ImportError:
                pass
        r["what"] = f"F.scaled_dot_product_attention(is_causal=True{', enable_gqa=True' if gqa else ''}) fwd+bwd, (B,NH,T,hs) layout{backend}"
        return r

    runners = {"ce": run_ce, "head": run_head, "adamw": run_adamw, "sgemm": run_sgemm, "attn": run_attn,
               "train": run_train}
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
