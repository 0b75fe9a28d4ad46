"""Extraction speed and memory against a plain HF forward, side by side in one run.

Times, on the same model and the same batches of token ids (steps of ~20 tokens):

* ``hf_forward``   plain HF forward, no hooks (``model(ids)``, logits included)
* ``hf_decoder``   the decoder alone (no LM head), for reference
* ``native_last``  mechgraph's native hooks, one layer near the end (int(0.9 n_layers))
* ``native_half``  one layer at half depth (the forward stops there)
* ``native_4``     four layers
* ``bridge_filter`` TransformerBridge ``run_with_cache(names_filter=...)``, one layer near the end
* ``bridge_all``   TransformerBridge ``run_with_cache()`` caching everything
* ``extract_e2e``  ``mechgraph.extract`` end to end (tokenise, hooks, store write), one layer
  (defaults: ``overlap=True``, batches built and shards written in threads)
* ``extract_seq``  the same with ``overlap=False`` (everything in turn on one thread)
* ``extract_pack`` the same with ``pack=True`` (equal-length traces here: nothing to pack,
  it shows packing's overhead, not its saving; see ``bench_packing.py`` for that)

Modes run in turn, A B C ... A B C ..., and the median of each is reported with its
ratio to ``hf_forward``'s throughput. Memory: the peak (CUDA allocator peak; on CPU the
process RSS sampled every 2 ms) and the peak above what was in use before the run (weights
excluded: what the mode itself allocates), each with its ratio to ``hf_forward``.

Usage::

    python benchmarks/bench_extract.py                          # CPU, default model
    python benchmarks/bench_extract.py --model random-qwen2.5-1.5b --device cuda \\
        --dtype bfloat16 --batch 8 --tokens 2048 --reps 5      # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from mechgraph.hooks import BatchPlan, hook_name, make_backend, pool_batch
from mechgraph.models import LoadedModel, load_model

MODES = [
    "hf_forward",
    "hf_decoder",
    "native_last",
    "native_half",
    "native_4",
    "bridge_filter",
    "bridge_all",
    "extract_e2e",
    "extract_seq",
    "extract_pack",
]
E2E = {"extract_e2e": {}, "extract_seq": {"overlap": False}, "extract_pack": {"pack": True}}
STEP_TOKENS = 20


#: Qwen2.5-1.5B's shape (random weights: the shape, not the values, sets the speed)
QWEN15B = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1_000_000.0,
    tie_word_embeddings=True,
)


def random_qwen(device: str, dtype: str, tokenizer: str) -> LoadedModel:
    """A random-weight model shaped like Qwen2.5-1.5B (weights do not change speed)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from mechgraph.models import _DTYPES, load_tokenizer

    cfg = Qwen2Config(vocab_size=151936, **QWEN15B)
    folder = Path(tempfile.mkdtemp(prefix="qwen-shape-"))
    cfg.save_pretrained(folder)  # the bridge reads the config from a folder
    tok = load_tokenizer(tokenizer)
    tok.save_pretrained(folder)
    with torch.device(device):
        hf = AutoModelForCausalLM.from_config(cfg, dtype=_DTYPES[dtype], attn_implementation="sdpa")
    hf.eval()
    return LoadedModel(hf, tok, "random-qwen2.5-1.5b", 28, 1536, 32768, dtype, device, str(folder))


def make_batch(lm: LoadedModel, batch: int, tokens: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, min(lm.tokenizer.vocab_size, 40000), (batch, tokens), generator=g)
    owner = (torch.arange(tokens) // STEP_TOKENS).repeat(batch, 1)
    owner = owner + torch.arange(batch)[:, None] * owner[0, -1].add(1)
    dev = torch.device(lm.device)
    return ids.to(dev), torch.ones_like(ids).to(dev), owner.to(dev)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Runner:
    def __init__(self, lm: LoadedModel, args) -> None:
        self.lm, self.args = lm, args
        n = lm.n_layers
        self.layers = {
            "native_last": [int(0.9 * n)],
            "native_half": [n // 2],
            "native_4": [n // 4, n // 2, (3 * n) // 4, int(0.9 * n)],
        }
        self.ids, self.mask, owner = make_batch(lm, args.batch, args.tokens)
        self.plan = BatchPlan.build(owner, int(owner.max()) + 1)
        self.backends = {
            m: make_backend(
                "native", lm, [hook_name(layer, "resid_post") for layer in ls], ["mean"]
            )
            for m, ls in self.layers.items()
        }
        self._bridge = None
        self._traces = None
        self.e2e_tokens = args.batch * args.tokens

    @property
    def bridge(self):
        if self._bridge is None:
            from transformer_lens.model_bridge import TransformerBridge

            self._bridge = TransformerBridge.boot_transformers(
                self.lm.path,
                hf_model=self.lm.hf,
                tokenizer=self.lm.tokenizer,
                device=self.lm.device,
                dtype=self.lm.hf.dtype,
            )
        return self._bridge

    def traces(self):
        if self._traces is None:
            from mechgraph.traces import Trace

            tok = self.lm.tokenizer
            out = []
            for b in range(self.args.batch):
                text = tok.decode(self.ids[b].tolist())
                out.append(Trace(id=f"b{b}", text=text))
            self._traces = out
            # decode -> encode does not give back the same count: time per real token
            enc = tok([t.text for t in out])["input_ids"]
            self.e2e_tokens = sum(len(x) for x in enc)
        return self._traces

    def run(self, mode: str) -> None:
        lm = self.lm
        with torch.inference_mode():
            if mode == "hf_forward":
                lm.hf(input_ids=self.ids, attention_mask=self.mask, use_cache=False)
            elif mode == "hf_decoder":
                lm.hf.get_decoder()(input_ids=self.ids, attention_mask=self.mask, use_cache=False)
            elif mode in self.backends:
                self.backends[mode].run(self.ids, self.mask, self.plan)
            elif mode == "bridge_filter":
                name = hook_name(self.layers["native_last"][0], "resid_post")
                _, cache = self.bridge.run_with_cache(self.ids, names_filter=name)
                pool_batch(cache[name], self.plan, ["mean"])
            elif mode == "bridge_all":
                _, cache = self.bridge.run_with_cache(self.ids)
                name = hook_name(self.layers["native_last"][0], "resid_post")
                pool_batch(cache[name], self.plan, ["mean"])
                del cache
            elif mode in E2E:
                from mechgraph.extract import extract

                with tempfile.TemporaryDirectory() as d:
                    extract(
                        self.traces(),
                        Path(d) / "s",
                        model=lm,
                        layers=tuple(self.layers["native_last"]),
                        segmenter="sentences",
                        batch_tokens=self.args.batch * (self.args.tokens + 64),
                        max_batch=self.args.batch,
                        progress=False,
                        **E2E[mode],
                    )
            else:
                raise ValueError(mode)
        sync(lm.device)

    def time(self, mode: str) -> tuple[float, float, float]:
        """(seconds, peak MiB, peak MiB above the memory in use before the run)."""
        if self.lm.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() / 2**20
            t0 = time.perf_counter()
            self.run(mode)
            dt = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated() / 2**20
            return dt, peak, peak - base
        with RssSampler() as rss:
            t0 = time.perf_counter()
            self.run(mode)
            dt = time.perf_counter() - t0
        return dt, rss.peak, rss.peak - rss.base


class RssSampler:
    """Peak resident memory of this process while a block runs (sampled every 2 ms)."""

    def __enter__(self) -> RssSampler:
        import ctypes
        import gc

        import psutil

        gc.collect()
        try:  # hand freed heap back to the OS so that the baseline is honest
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)


def check_parity(runner: Runner) -> float:
    """Max abs error of native mean pooling against HF ``output_hidden_states``, same batch."""
    lm, layer = runner.lm, runner.layers["native_half"][0]
    be = runner.backends["native_half"]
    with torch.inference_mode():
        pooled = be.run(runner.ids, runner.mask, runner.plan)[hook_name(layer, "resid_post")]
        hs = lm.hf(input_ids=runner.ids, attention_mask=runner.mask, output_hidden_states=True)
    h = hs.hidden_states[layer + 1].double().reshape(-1, lm.d_model)
    owner = runner.plan.owner.reshape(-1)
    ref = torch.zeros(runner.plan.n_rows, lm.d_model, dtype=torch.float64, device=h.device)
    ref.index_add_(0, owner, h)
    ref /= torch.bincount(owner, minlength=runner.plan.n_rows)[:, None]
    ours = pooled["mean"] / pooled["count"][:, None]
    return float((ours - ref).abs().max())


def load(args) -> LoadedModel:
    if args.model == "random-qwen2.5-1.5b":
        return random_qwen(args.device, args.dtype, args.tokenizer)
    return load_model(args.model, dtype=args.dtype, device=args.device)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tokenizer", default="default", help="tokenizer of the random model")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--out", default="benchmarks/results/extract_cpu.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load(args)
    runner = Runner(lm, args)
    parity = check_parity(runner)
    print(
        f"parity: max abs error of pooled means vs HF hidden states on the same batch: {parity:.3g}"
    )
    modes = [m for m in args.modes.split(",") if m]
    available = []
    for m in modes:  # warm-up, and drop what cannot run here
        try:
            runner.time(m)
            available.append(m)
        except (ImportError, torch.cuda.OutOfMemoryError) as e:
            print(f"skip {m}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
            if lm.device.startswith("cuda"):
                torch.cuda.empty_cache()
    times: dict[str, list[float]] = {m: [] for m in available}
    peaks: dict[str, list[float]] = {m: [] for m in available}
    extra: dict[str, list[float]] = {m: [] for m in available}
    for _ in range(args.reps):
        for m in available:
            dt, peak, above = runner.time(m)
            times[m].append(dt)
            peaks[m].append(peak)
            extra[m].append(above)
    n_tok = args.batch * args.tokens
    base = n_tok / statistics.median(times["hf_forward"])  # tokens/s of the plain forward
    rows = []
    pk0, ex0 = statistics.median(peaks["hf_forward"]), statistics.median(extra["hf_forward"])
    for m in available:
        med, pk, ex = (
            statistics.median(times[m]),
            statistics.median(peaks[m]),
            statistics.median(extra[m]),
        )
        rows.append(
            {
                "mode": m,
                "median_s": med,
                "min_s": min(times[m]),
                "max_s": max(times[m]),
                "tokens": (tk := runner.e2e_tokens if m in E2E else n_tok),
                "tokens_per_s": tk / med,
                "throughput_vs_hf_forward": tk / med / base,
                "peak_mib": pk,
                "peak_vs_hf_forward": pk / pk0,
                "above_baseline_mib": ex,
                "above_baseline_vs_hf_forward": ex / ex0 if ex0 > 0 else None,
            }
        )
    device_name = (
        torch.cuda.get_device_name()
        if lm.device.startswith("cuda")
        else platform.processor() or platform.machine()
    )
    meta = {
        "model": lm.model_id,
        "n_layers": lm.n_layers,
        "dtype": lm.dtype,
        "device": lm.device,
        "device_name": device_name,
        "cpu_threads": torch.get_num_threads(),
        "batch": args.batch,
        "tokens": args.tokens,
        "reps": args.reps,
        "torch": torch.__version__,
        "memory": "CUDA allocator peak" if lm.device.startswith("cuda") else "peak RSS (sampled)",
    }
    print(
        f"{lm.model_id} on {device_name} ({lm.dtype}), {args.batch} x {args.tokens} tokens, {args.reps} reps"
    )
    print(
        f"{'mode':<14}{'median s':>10}{'tok/s':>11}{'x hf_fwd':>9}{'peak MiB':>10}{'x peak':>8}"
        f"{'extra MiB':>11}{'x extra':>9}"
    )
    for r in rows:
        xr = r["above_baseline_vs_hf_forward"]
        print(
            f"{r['mode']:<14}{r['median_s']:>10.3f}{r['tokens_per_s']:>11.0f}"
            f"{r['throughput_vs_hf_forward']:>9.2f}{r['peak_mib']:>10.0f}{r['peak_vs_hf_forward']:>8.2f}"
            f"{r['above_baseline_mib']:>11.0f}{(f'{xr:.2f}' if xr else '-'):>9}"
        )
    out = (
        Path(os.environ.get("OUT", "")) / Path(args.out).name
        if os.environ.get("OUT")
        else Path(args.out)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    meta["parity_max_abs_error"] = parity
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
