"""Extraction at the device's limit: peak, plain forward, end-to-end extract, one run.

Measures on one CUDA device (random weights, no downloads):

a. ``peak``     bf16 matmul throughput (``8192^3``, the median of 20): the MFU denominator.
b. ``forward``  the plain HF decoder forward (no LM head, no hooks) of a Qwen2.5-1.5B-shaped
   model at 8 x 2048 and 2 x 4096 tokens, with ``sdpa``, ``eager`` and ``flash_attention_2``
   (when ``flash_attn`` imports).
c. ``extract``  ``mechgraph.extract`` end to end (hooks, pooling, shard writes; one hook on
   the last block so every layer runs) on ragged synthetic traces, ``overlap`` off/on x
   ``pack`` off/on, next to the plain forward of the *same* padded batches
   (``forward_same_batches``); ratios side by side.

MFU = FLOPs per token x tokens/s / peak, with FLOPs per token = ``2 * N + 2 * n_layers *
d_model * L``: N the non-embedding parameters (no LM head), the second term the causal
attention score and value matmuls at sequence length L (per token, average context L/2,
2 matmuls of 2 FLOPs per multiply-add). Extract counts real (unpadded) tokens and L their
mean piece length; padding and the masked attention of packed rows count as waste.

Usage::

    python benchmarks/gpu_extract.py --out $OUT/gpu_extract.json      # CUDA, < ~8 min on an H200
    python benchmarks/gpu_extract.py --smoke --out /tmp/g.json        # CPU, tiny model, seconds

On a lent machine that has torch and transformers but not this project's packages (the
default model's package is 94 MB), only the tokenizer travels: here, once,
``mkdir -p .gpu && cp ~/.cache/mechgraph/models/SmolLM2-135M-Instruct-Q4_1/tokenizer*
.gpu/ && echo /.gpu/ >> .git/info/exclude``; there, carrying ``.gpu``,
``PYTHONPATH=. python3 benchmarks/gpu_extract.py --tokenizer .gpu --out $OUT/g.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import QWEN15B  # the shape bench_extract times too

TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
SENT = [
    "Okay, so we need the total number of ways to choose the committee.",
    "Let me plan: first count the cases with two women, then subtract the overlaps.",
    "3 times 12 is 36, and 36 minus 9 is 27.",
    "Wait, I should double-check that, because the order does not matter here.",
    "So the answer is 27, unless I missed a case with the chair.",
]


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(dev)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        out.append(time.perf_counter() - t0)
    return out


def peak_tflops(dev: torch.device, smoke: bool) -> dict:
    n, dtype, reps = (256, torch.float32, 5) if smoke else (8192, torch.bfloat16, 20)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    ts = timed(lambda: a @ b, dev, reps, warmup=3)
    med = statistics.median(ts)
    return {"n": n, "dtype": str(dtype), "median_s": med, "tflops": 2 * n**3 / med / 1e12}


def make_model(shape: dict, tok, dev: torch.device, dtype: torch.dtype, attn: str):
    from transformers import AutoModelForCausalLM, Qwen2Config

    from mechgraph.models import LoadedModel

    cfg = Qwen2Config(vocab_size=len(tok), **shape)
    torch.manual_seed(0)
    with torch.device(dev):
        hf = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn)
    hf.eval()
    n_ctx = shape["max_position_embeddings"]
    name = "random-qwen2.5-1.5b" if shape is QWEN15B else "random-tiny"
    dt = str(dtype).removeprefix("torch.")
    return LoadedModel(
        hf, tok, name, cfg.num_hidden_layers, cfg.hidden_size, n_ctx, dt, str(dev), ""
    )


def n_params(hf) -> int:
    """Non-embedding parameters of the decoder (no LM head)."""
    dec = hf.get_decoder()
    emb = dec.embed_tokens.weight.numel()
    return sum(p.numel() for p in dec.parameters()) - emb


def flops_per_token(lm, seq_len: float) -> float:
    return 2 * n_params(lm.hf) + 2 * lm.n_layers * lm.d_model * seq_len


def attn_impls(smoke: bool) -> list[str]:
    out = ["sdpa", "eager"]
    try:
        import flash_attn  # noqa: F401

        out.append("flash_attention_2")
    except ImportError:
        pass
    return out


def bench_forward(shape, tok, dev, dtype, shapes, smoke, peak, reps) -> list[dict]:
    rows = []
    for attn in attn_impls(smoke):
        try:
            lm = make_model(shape, tok, dev, dtype, attn)
        except Exception as e:  # e.g. flash-attn built for another torch
            rows.append({"attn": attn, "error": str(e).splitlines()[0]})
            continue
        dec = lm.hf.get_decoder()
        for B, T in shapes:
            ids = torch.randint(100, min(len(tok), 40000), (B, T), device=dev)

            def fwd(ids=ids, dec=dec):
                with torch.inference_mode():
                    dec(input_ids=ids, use_cache=False)

            try:
                med = statistics.median(timed(fwd, dev, reps))
            except torch.OutOfMemoryError:
                rows.append({"attn": attn, "batch": B, "tokens": T, "error": "out of memory"})
                torch.cuda.empty_cache()
                continue
            tps = B * T / med
            mfu = flops_per_token(lm, T) * tps / (peak * 1e12)
            rows.append({"attn": attn, "batch": B, "tokens": T, "tokens_per_s": tps, "mfu": mfu})
            print(f"forward {attn:18s} {B}x{T:<5d} {tps:12.0f} tok/s  MFU {mfu:6.1%}", flush=True)
        del lm, dec
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def synth_traces(n: int, median_tokens: int, max_tokens: int, seed: int = 0):
    """Ragged traces, log-normal lengths (the Thought Anchors traces: median ~4.8k, long tail)."""
    from mechgraph.traces import Trace

    rng = np.random.default_rng(seed)
    lens = np.clip(rng.lognormal(np.log(median_tokens), 0.7, size=n), 16, max_tokens)
    out = []
    for i, m in enumerate(lens):
        n_sent = max(1, int(m / 16))  # ~16 tokens a sentence
        body = " ".join(SENT[(i + k) % len(SENT)] for k in range(n_sent))
        out.append(Trace(id=f"s{i}", text=body, prompt=f"Problem {i}: solve.\n<think>\n"))
    return out


def bench_extract(shape, tok, dev, dtype, args, peak) -> tuple[list[dict], dict]:
    import mechgraph as mg
    from mechgraph.align import tokenize_traces
    from mechgraph.packing import build_batch, plan_batches

    attn = "flash_attention_2" if "flash_attention_2" in attn_impls(args.smoke) else "sdpa"
    lm = make_model(shape, tok, dev, dtype, attn)
    max_tok = min(lm.n_ctx, args.max_tokens)
    traces = synth_traces(args.traces, args.median_tokens, max_tok - 32)
    lengths = [len(ids) for ids, _ in tokenize_traces(tok, traces)]
    real = sum(lengths)
    mean_len = real / len(lengths)
    opts = dict(
        model=lm,
        layers=(-1,),
        pools=("mean", "last"),
        batch_tokens=args.batch_tokens,
        shard_traces=args.shard_traces,
        progress=False,
    )
    fpt = flops_per_token(lm, mean_len)

    # the plain forward of the same padded batches extract runs (ids only, no hooks)
    class P:
        def __init__(self, n):
            self.ids = np.full(n, 100, dtype=np.int64)
            self.owner = np.zeros(n, dtype=np.int64)
            self.steps = [0]

    chunks = []
    for c in range(0, len(lengths), args.shard_traces):
        ls = lengths[c : c + args.shard_traces]
        chunk = [P(n) for n in ls]
        pieces = [(i, (0, n, 0, n, False)) for i, n in enumerate(ls)]
        for rows in plan_batches(ls, args.batch_tokens, 64, "padded"):
            hb = build_batch(rows, pieces, ls, chunk, 0, None, "padded")
            chunks.append((torch.from_numpy(hb.ids).to(dev), torch.from_numpy(hb.mask).to(dev)))
    dec = lm.hf.get_decoder()

    def same_batches():
        with torch.inference_mode():
            for ids, mask in chunks:
                dec(input_ids=ids, attention_mask=mask, use_cache=False)

    base = statistics.median(timed(same_batches, dev, args.reps))
    rows = [
        {
            "mode": "forward_same_batches",
            "tokens_per_s": real / base,
            "mfu": fpt * real / base / (peak * 1e12),
        }
    ]
    print(f"extract: {len(traces)} traces, {real} tokens, attention {attn}", flush=True)
    print(f"  {'forward_same_batches':22s} {real / base:12.0f} tok/s  1.000", flush=True)
    modes = [(o, p) for p in (False, True) for o in (False, True)]
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        warm = 0 if args.smoke else 1
        for rep in range(args.reps + warm):  # modes in turn; the first round is warm-up
            for o, p in modes:
                name = f"overlap={int(o)} pack={int(p)}"
                out = Path(tmp) / f"{rep}-{int(o)}{int(p)}"
                sync(dev)
                t0 = time.perf_counter()
                mg.extract(traces, out, overlap=o, pack=p, **opts)
                sync(dev)
                if rep >= warm:
                    times.setdefault(name, []).append(time.perf_counter() - t0)
    for name, ts in times.items():
        med = statistics.median(ts)
        tps = real / med
        rows.append(
            {
                "mode": name,
                "tokens_per_s": tps,
                "mfu": fpt * tps / (peak * 1e12),
                "vs_forward": base / med,
            }
        )
        print(f"  {name:22s} {tps:12.0f} tok/s  {base / med:5.3f}", flush=True)
    info = {"n_traces": len(traces), "real_tokens": real, "mean_len": mean_len, "attn": attn}
    return rows, info


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny model on CPU, seconds")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default $OUT/...)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--tokenizer", default="default", help="'default' or a tokenizer folder")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--traces", type=int, default=None)
    ap.add_argument("--median-tokens", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--shard-traces", type=int, default=64)
    args = ap.parse_args(argv)
    smoke = args.smoke
    dev = torch.device(args.device or ("cpu" if smoke or not torch.cuda.is_available() else "cuda"))
    if smoke:
        torch.set_num_threads(1)
    dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    shape = TINY if smoke else QWEN15B
    shapes = [(2, 64)] if smoke else [(8, 2048), (2, 4096)]
    args.reps = args.reps or (1 if smoke else 3)
    args.traces = args.traces or (8 if smoke else 96)
    args.median_tokens = args.median_tokens or (40 if smoke else 3000)
    args.batch_tokens = args.batch_tokens or (256 if smoke else 16384)
    if smoke:
        args.max_tokens = min(args.max_tokens, 256)
        args.shard_traces = 4
    out = args.out or Path(os.environ.get("OUT", "benchmarks/results")) / "gpu_extract.json"

    from mechgraph.models import load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    t0 = time.perf_counter()
    peak = peak_tflops(dev, smoke)
    print(f"peak {peak['dtype']} {peak['n']}^3 matmul: {peak['tflops']:.1f} TFLOP/s", flush=True)
    fwd = bench_forward(shape, tok, dev, dtype, shapes, smoke, peak["tflops"], args.reps)
    ext, info = bench_extract(shape, tok, dev, dtype, args, peak["tflops"])
    res = {
        "smoke": smoke,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "dtype": str(dtype),
        "model": "random Qwen2.5-1.5B shape" if not smoke else "random tiny",
        "flops_per_token": "2 * N_nonembedding + 2 * n_layers * d_model * L",
        "peak_tflops": peak["tflops"],
        "peak": peak,
        "forward": fwd,
        "extract_info": info,
        "extract": ext,
        "wall_s": time.perf_counter() - t0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {out} ({res['wall_s']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
