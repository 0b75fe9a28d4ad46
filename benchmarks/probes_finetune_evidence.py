"""Issue 14: does fine-tuning the default reader beat its frozen states? (LoRA, CPU)

Leave one problem out on the Thought Anchors traces (10 folds, both traces of a problem
held out), like ``probes_transfer_evidence.py``, but the reader itself is trained:

* SmolLM2-135M (the default model), its first 20 blocks (block 19 is the probes' best),
  LoRA rank 8 (alpha 16, dropout 0.05) on the attention's q / v / o projections;
* per sentence the mean and last token state of the final (normed) layer, with those of
  its two neighbours (window 1), into a linear read-out;
* class-balanced binary cross-entropy (``pos_weight`` = negatives / positives of the
  training fold), AdamW (LoRA lr 3e-4, read-out 1e-3, weight decay 0.01), 2 epochs of
  one trace per step, bfloat16 autocast, seed 0; threshold 0.5.

All settings were fixed before any fold was scored. A trace is read up to the model's
8,192 tokens (one trace of 8,392 loses its last steps). Writes per-fold F1 / AUROC and
the out-of-fold scores to ``--out``; about 6.5 minutes a fold on 2 cores. Needs ``peft``
(in the ``verl`` and ``test`` extras). Usage::

    python benchmarks/probes_finetune_evidence.py --out benchmarks/results/probes_finetune.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TA = ROOT.parent / "shared" / "data" / "thought_anchors_llama8b"
N_BLOCKS, EPOCHS, N_CTX = 20, 2, 8192


def load(tok):
    from mechgraph.align import prepare_trace
    from mechgraph.labels import PLANNING_TAGS
    from mechgraph.traces import load_traces

    data = []
    for t in load_traces(TA):
        ids, steps, spans = prepare_trace(t, tok, on_empty_step="merge")
        y = np.array([s.label in PLANNING_TAGS for s in steps], dtype=np.float32)
        keep = [k for k, (_, b) in enumerate(spans) if b <= N_CTX]
        data.append(
            {
                "id": t.id,
                "prob": t.id.split("/")[-1],
                "ids": torch.tensor(ids[:N_CTX]),
                "spans": [spans[k] for k in keep],
                "y": torch.tensor(y[keep]),
            }
        )
    return data


def build():
    from peft import LoraConfig, get_peft_model

    from mechgraph.models import load_model

    torch.manual_seed(0)
    base = load_model("default").hf
    base.model.layers = base.model.layers[:N_BLOCKS]
    cfg = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj", "o_proj"]
    )
    return get_peft_model(base.model, cfg), torch.nn.Linear(6 * base.config.hidden_size, 1)


def features(m, d):
    """Mean and last token state of each sentence, with its two neighbours'."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = m(input_ids=d["ids"][None]).last_hidden_state[0].float()
    cs = torch.cat([torch.zeros(1, h.shape[1]), h.cumsum(0)])
    a = torch.tensor([s for s, _ in d["spans"]])
    b = torch.tensor([e for _, e in d["spans"]])
    x = torch.cat([(cs[b] - cs[a]) / (b - a)[:, None], h[b - 1]], 1)
    return torch.cat([x, torch.cat([x[:1], x[:-1]]), torch.cat([x[1:], x[-1:]])], 1)


def fold(data, p):
    m, head = build()
    tr = [d for d in data if d["prob"] != p]
    te = [d for d in data if d["prob"] == p]
    pos = float(sum(d["y"].sum() for d in tr))
    neg = float(sum(len(d["y"]) for d in tr)) - pos
    lossf = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(neg / pos))
    opt = torch.optim.AdamW(
        [
            {"params": [q for q in m.parameters() if q.requires_grad], "lr": 3e-4},
            {"params": head.parameters(), "lr": 1e-3},
        ],
        weight_decay=0.01,
    )
    for ep in range(EPOCHS):
        m.train()
        for i in np.random.default_rng(ep).permutation(len(tr)):
            loss = lossf(head(features(m, tr[i])).squeeze(1), tr[i]["y"])
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        s = [torch.sigmoid(head(features(m, d)).squeeze(1)).numpy() for d in te]
    return np.concatenate([d["y"].numpy() for d in te]), np.concatenate(s)


def main(argv: list[str] | None = None) -> None:
    from sklearn.metrics import f1_score, roc_auc_score

    from mechgraph.io import write_text_atomic
    from mechgraph.models import load_tokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/probes_finetune.json"))
    ap.add_argument("--folds", type=int, default=None, help="only the first N problems")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load(load_tokenizer("default"))
    out: dict = {}
    for p in sorted({d["prob"] for d in data})[: args.folds]:
        t0 = time.time()
        y, s = fold(data, p)
        out[p] = {
            "f1": float(f1_score(y, s >= 0.5)),
            "auroc": float(roc_auc_score(y, s)),
            "n": len(y),
            "seconds": time.time() - t0,
            "y": y.tolist(),
            "s": s.tolist(),
        }
        print(p, round(out[p]["f1"], 3), round(out[p]["auroc"], 3), f"{out[p]['seconds']:.0f} s")
        write_text_atomic(args.out, json.dumps(out) + "\n")
    print("mean F1", np.mean([v["f1"] for v in out.values()]))


if __name__ == "__main__":
    main()
