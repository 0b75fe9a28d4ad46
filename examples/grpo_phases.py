"""A real GRPO-vs-HICRA run on a CPU: graded arithmetic, resumable training, checkpoint accuracy.

Subcommands:

``measure``
    Greedy accuracy of the model on each difficulty level (Wilson 95% CI), and the measured
    time of a few GRPO steps (plain and HICRA) at the planned size; prints the levels where
    the model is between 10% and 60% correct and how many steps fit a budget. Writes
    ``measure.json`` into ``--out`` when given (``all`` reads it).
``train --method grpo|hicra --seed N --steps S --out DIR``
    TRL GRPO (plain, or HICRA: ``A + 0.2 |A|`` on ``sg:hicra`` planning tokens) with
    :class:`~mechgraph.weights.recorder.PhaseRecorder` writing ``DIR/traces.jsonl`` and
    ``phases/*`` metrics into ``trainer_state.json``. Checkpoints every 25 steps into
    ``DIR``; a rerun resumes from the last one. ``DIR`` must be outside the repository.
``evaluate --out DIR``
    Greedy accuracy of the start model (step 0) and every checkpoint in ``DIR`` on the
    held-aside set, with Wilson CIs, to ``DIR/eval.jsonl`` (columns ``step``,
    ``accuracy``, ...; ``mechgraph phases DIR/traces.jsonl --logs DIR/eval.jsonl``).
``all --budget-hours 2 --out ROOT``
    grpo and hicra for 2 seeds each (``ROOT/{method}-s{seed}``), one after another, sized
    from the measured step time, then ``evaluate`` on each. Every run is resumable: rerun
    the same command after an interruption.

The task: word problems built from templates, ``level`` = number of operations (1-3) on
small numbers, seeded, exact integer answers. The checker reads ``\\boxed{N}`` when present,
else the last number of the completion. Train and held-aside problems are disjoint by
construction: a problem's key (its numbers and operations) is hashed into one of the two
splits, and the two splits are drawn with different seeds.

Run (CPU)::

    python examples/grpo_phases.py measure --n 20 --out /tmp/grpo-phases
    python examples/grpo_phases.py train --method hicra --seed 0 --steps 45 --out /tmp/r/hicra-s0
    python examples/grpo_phases.py evaluate --out /tmp/r/hicra-s0
    python examples/grpo_phases.py all --budget-hours 2 --out /tmp/grpo-phases

Needs ``pip install trl==1.16.0``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NAMES = ["Tom", "Sara", "Ben", "Lina", "Omar", "Mia", "Jack", "Ana", "Leo", "Zoe"]
ITEMS = ["apples", "marbles", "stickers", "coins", "books", "pencils", "cards", "shells"]
SUFFIX = " Give the answer as a number."
CKPT = re.compile(r"^checkpoint-(\d+)$")


# ----------------------------------------------------------------------------- the task
def _apply(op: str, x: int, n: int) -> int:
    return {"add": x + n, "sub": x - n, "mul": x * n, "div": x // n}[op]


def make_problem(rng: random.Random, level: int) -> dict[str, Any]:
    """One word problem with ``level`` operations on small numbers; exact integer answer."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    x = rng.randint(2, 20)
    start = x
    steps: list[tuple[str, int]] = []
    while len(steps) < level:
        op = rng.choice(["add", "sub", "mul", "div"])
        if op == "add":
            n = rng.randint(2, 15)
        elif op == "sub":
            if x <= 2:
                continue
            n = rng.randint(1, min(15, x - 1))
        elif op == "mul":
            if x > 30:
                continue
            n = rng.randint(2, 4)
        else:
            divs = [d for d in (2, 3, 4, 5) if x % d == 0 and x // d >= 1]
            if not divs:
                continue
            n = rng.choice(divs)
        x = _apply(op, x, n)
        steps.append((op, n))
    words = {
        "add": "Then {p} gets {n} more.",
        "sub": "Then {p} gives {n} away.",
        "mul": "Then the number of {item} {p} has becomes {n} times as large.",
        "div": "Then {p} splits them into {n} equal groups and keeps one group.",
    }
    text = f"{name} has {start} {item}. " + " ".join(
        words[op].format(p=name, n=n, item=item) for op, n in steps
    )
    text += f" How many {item} does {name} have now?"
    key = f"{start}|" + "|".join(f"{op}{n}" for op, n in steps)
    return {"question": text, "answer": str(x), "level": level, "key": key}


def split_of(key: str) -> str:
    """``eval`` for one key in five (by hash), else ``train``: the splits never share a key."""
    return "eval" if int(hashlib.sha256(key.encode()).hexdigest(), 16) % 5 == 0 else "train"


def make_set(split: str, levels: list[int], n_per_level: int, seed: int) -> list[dict[str, Any]]:
    """``n_per_level`` distinct problems per level, all of ``split`` (``train`` or ``eval``)."""
    rng = random.Random(f"{split}:{seed}")
    out: list[dict[str, Any]] = []
    for level in levels:
        seen: set[str] = set()
        tries = 0
        while len(seen) < n_per_level:
            tries += 1
            if tries > 200 * n_per_level:
                raise RuntimeError(f"level {level}: too few distinct {split} problems")
            p = make_problem(rng, level)
            if p["key"] in seen or split_of(p["key"]) != split:
                continue
            seen.add(p["key"])
            p["id"] = f"{split}-{level}-{len(seen) - 1}"
            out.append(p)
    return out


_BOXED = re.compile(r"\\boxed\{\s*(-?[\d,]+(?:\.\d+)?)\s*\}")
_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The last ``\\boxed{N}``, else the last number; normalised (no commas, no ``.0``)."""
    boxed = _BOXED.findall(text)
    found = boxed[-1] if boxed else (_NUM.findall(text.replace(",", "")) or [None])[-1]
    if found is None:
        return None
    s = found.replace(",", "")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def is_correct(text: str, answer: str) -> bool:
    return extract_answer(text) == str(answer)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of ``k`` successes in ``n``."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (0.0 if k == 0 else max(0.0, c - h), 1.0 if k == n else min(1.0, c + h))


def _messages(q: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q + SUFFIX}]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# ----------------------------------------------------------------------------- model side
def model_path(name: str) -> str:
    """``default`` -> the saved HF folder of SmolLM2-135M-Instruct; else the path itself."""
    if name == "default":
        from mechgraph.models import default_model_path

        return str(default_model_path())  # a saved folder: Trainer refuses GGUF quantizers
    return str(Path(name).resolve())


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def greedy_accuracy(
    path: str, problems: list[dict[str, Any]], max_tokens: int, batch: int = 20, *, stopped=None
) -> list[bool]:
    """Greedy completions of ``problems`` by the model at ``path``; correct or not, in order.

    ``stopped``, a list, receives whether each completion ended before ``max_tokens``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    out: list[bool] = []
    for i in range(0, len(problems), batch):
        chunk = problems[i : i + batch]
        texts = [
            tok.apply_chat_template(
                _messages(p["question"]), add_generation_prompt=True, tokenize=False
            )
            for p in chunk
        ]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(
                **enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
        stop = {tok.eos_token_id, tok.pad_token_id}
        for p, ids in zip(chunk, gen[:, enc["input_ids"].shape[1] :], strict=True):
            out.append(is_correct(tok.decode(ids, skip_special_tokens=True), p["answer"]))
            if stopped is not None:
                stopped.append(bool(set(ids.tolist()) & stop))
    return out


def _dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": [_messages(r["question"]) for r in rows],
            "answer": [r["answer"] for r in rows],
            "level": [r["level"] for r in rows],
        }
    )


def correct_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the checker accepts the completion, else 0.0 (truncated ones too)."""
    out = []
    for c, a in zip(completions, answer, strict=True):
        text = c[0]["content"] if isinstance(c, list) else c
        out.append(1.0 if is_correct(text, a) else 0.0)
    return out


def make_stop_reward(stop_ids: set[int]):
    """1.0 when the completion is correct AND ended by the model (its last id is EOS/pad).

    With :func:`correct_reward` alone, a truncated completion whose last number happens to
    be the answer earns the reward while a wrong completion that stops is penalised at its
    EOS: the first CPU run learned never to stop within 10 steps (every completion at the
    token cap). Requiring the stop is the usual format condition of GRPO recipes.
    """

    def correct_and_stopped(completions, answer, completion_ids, **kwargs) -> list[float]:
        ok = correct_reward(completions, answer)
        return [
            r if ids and ids[-1] in stop_ids else 0.0
            for r, ids in zip(ok, completion_ids, strict=True)
        ]

    return correct_and_stopped


def _checker(text: str, row: dict) -> bool:
    return is_correct(text, row.get("answer", ""))


def build_trainer(
    method: str,
    path: str,
    rows: list[dict[str, Any]],
    out: Path,
    *,
    seed: int,
    steps: int,
    num_generations: int,
    batch: int,
    max_tokens: int,
    lr: float,
    save_every: int,
    temperature: float = 1.0,
    traces: Path | None,
    extra_callbacks: list | None = None,
    require_stop: bool = True,
) -> Any:
    """A recording GRPO trainer (plain or HICRA) writing checkpoints into ``out``."""
    from transformers import AutoTokenizer

    from mechgraph.weights import AdvantageConfig
    from mechgraph.weights.recorder import PhaseRecorder, make_recording_trainer
    from mechgraph.weights.trl import cpu_grpo_config, make_grpo_trainer_class

    if method not in ("grpo", "hicra"):
        raise SystemExit(f"--method must be grpo or hicra, not {method!r}")
    config = cpu_grpo_config(
        out,
        per_device_train_batch_size=batch,
        num_generations=num_generations,
        max_completion_length=max_tokens,
        max_steps=steps,
        learning_rate=lr,
        temperature=temperature,
        save_strategy="steps" if save_every > 0 else "no",
        save_steps=max(save_every, 1),
        seed=seed,
        data_seed=seed,
    )
    callbacks = list(extra_callbacks or [])
    if traces is not None:
        callbacks.append(PhaseRecorder(traces, planning="sg:hicra", checker=_checker))
    kw: dict[str, Any] = {}
    if method == "hicra":
        base = make_grpo_trainer_class()
        kw = {
            "planning": "sg:hicra",
            "advantage_config": AdvantageConfig(transform="hicra", alpha=0.2),
        }
    else:
        base = None
    tok = AutoTokenizer.from_pretrained(path)
    stop_ids = {i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None}
    return make_recording_trainer(base)(
        model=path,
        reward_funcs=make_stop_reward(stop_ids) if require_stop else correct_reward,
        args=config,
        train_dataset=_dataset(rows),
        processing_class=tok,
        callbacks=callbacks,
        **kw,
    )


def checkpoints(out: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of the complete checkpoints in ``out``, by step."""
    found = []
    for p in out.glob("checkpoint-*"):
        m = CKPT.match(p.name)
        if m and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


# ----------------------------------------------------------------------------- commands
def _levels(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def cmd_measure(args: argparse.Namespace) -> dict[str, Any]:
    from transformers import TrainerCallback

    _threads(args.threads)
    path = model_path(args.model)
    levels = _levels(args.levels)
    res: dict[str, Any] = {"model": args.model, "n": args.n, "levels": {}, "step_s": {}}
    probs = make_set("eval", levels, args.n, seed=1000)
    t0 = time.perf_counter()
    ok = greedy_accuracy(path, probs, args.eval_tokens)
    res["eval_s_per_problem"] = (time.perf_counter() - t0) / len(probs)
    for level in levels:
        got = [c for c, p in zip(ok, probs, strict=True) if p["level"] == level]
        k, n = sum(got), len(got)
        lo, hi = wilson(k, n)
        res["levels"][level] = {"correct": k, "n": n, "rate": k / n, "lo": lo, "hi": hi}
        print(f"level {level}: {k}/{n} = {k / n:.2f}  (Wilson 95% CI {lo:.2f}-{hi:.2f})")
    pick = [lv for lv, r in res["levels"].items() if 0.10 <= r["rate"] <= 0.60]
    res["pick"] = pick
    print(f"levels between 10% and 60% correct: {pick or 'none'}")

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.t: list[float] = []

        def on_step_begin(self, *a, **k):  # type: ignore[no-untyped-def]
            self._t = time.perf_counter()

        def on_step_end(self, *a, **k):  # type: ignore[no-untyped-def]
            self.t.append(time.perf_counter() - self._t)

    rows = make_set("train", pick or levels, 16, seed=0)
    import tempfile

    for method in ("grpo", "hicra"):
        timer = Timer()
        with tempfile.TemporaryDirectory() as tmp:
            tr = build_trainer(
                method,
                path,
                rows,
                Path(tmp),
                seed=0,
                steps=args.time_steps,
                num_generations=args.num_generations,
                batch=args.batch,
                max_tokens=args.max_tokens,
                lr=args.lr,
                save_every=0,
                temperature=args.temperature,
                traces=Path(tmp) / "traces.jsonl",
                extra_callbacks=[timer],
                require_stop=args.require_stop,
            )
            tr.train()
        per = timer.t[1:] or timer.t  # the first step carries warm-up
        res["step_s"][method] = sum(per) / len(per)
        print(f"{method}: step times {[round(t, 1) for t in timer.t]} s")
    step = max(res["step_s"].values())
    budget = args.budget_hours * 3600
    runs = 4
    eval_s = res["eval_s_per_problem"] * args.eval_n * len(pick or levels)
    n_ckpt = 5
    per_run = (budget / runs) - eval_s * (n_ckpt + 1)
    res["suggested_steps"] = max(1, int(per_run / step))
    res["planned"] = {
        k: getattr(args, k) for k in ("num_generations", "batch", "max_tokens", "budget_hours")
    }
    print(
        f"step {step:.1f} s (slower method) at G={args.num_generations}, batch {args.batch}, "
        f"{args.max_tokens} tokens; {args.budget_hours} h for {runs} runs + evaluation: "
        f"{res['suggested_steps']} steps a run"
    )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "measure.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def _refuse_inside_repo(out: Path) -> None:
    out = out.resolve()
    if out == REPO or REPO in out.parents:
        raise SystemExit(f"--out {out} is inside the repository {REPO}: put runs elsewhere")


def cmd_train(args: argparse.Namespace) -> None:
    _threads(args.threads)
    out = Path(args.out)
    _refuse_inside_repo(out)
    out.mkdir(parents=True, exist_ok=True)
    levels = _levels(args.levels)
    run = {
        "method": args.method,
        "seed": args.seed,
        "model": model_path(args.model),
        "levels": levels,
        "n_train": args.n_train,
        "eval_n": args.eval_n,
        "num_generations": args.num_generations,
        "batch": args.batch,
        "max_tokens": args.max_tokens,
        "lr": args.lr,
        "temperature": args.temperature,
        "reward": "correct+stopped" if args.require_stop else "correct",
    }
    run_file = out / "run.json"
    if run_file.is_file():
        old = json.loads(run_file.read_text())
        diff = {k: (old.get(k), v) for k, v in run.items() if old.get(k) != v}
        if diff:
            raise SystemExit(f"{out} holds a different run (old, new): {diff}")
    else:
        run_file.write_text(json.dumps(run, indent=1) + "\n")
    train_file, eval_file = out / "data_train.jsonl", out / "data_heldout.jsonl"
    if not train_file.is_file():
        _write_jsonl(train_file, make_set("train", levels, args.n_train, seed=args.seed))
    if not eval_file.is_file():
        # held-aside: the eval split, one fixed seed for all runs (comparable accuracies)
        _write_jsonl(eval_file, make_set("eval", levels, args.eval_n, seed=1000))
    rows = _read_jsonl(train_file)
    done = checkpoints(out)
    resume = str(done[-1][1]) if done else None
    if done and done[-1][0] >= args.steps:
        print(f"{out}: already at step {done[-1][0]}")
        return
    tr = build_trainer(
        args.method,
        run["model"],
        rows,
        out,
        seed=args.seed,
        steps=args.steps,
        num_generations=args.num_generations,
        batch=args.batch,
        max_tokens=args.max_tokens,
        lr=args.lr,
        save_every=args.save_every,
        temperature=args.temperature,
        traces=out / "traces.jsonl",
        require_stop=args.require_stop,
    )
    print(f"{args.method} seed {args.seed}: " + (f"resuming from {resume}" if resume else "start"))
    tr.train(resume_from_checkpoint=resume)
    if args.save_every > 0 and not (out / f"checkpoint-{tr.state.global_step}").is_dir():
        tr._save_checkpoint(tr.model, trial=None)  # the last step too, for evaluate
    _prune(out)


def _prune(out: Path) -> None:
    """Drop optimizer/scheduler state from all but the last checkpoint (disk: 1 GB each)."""
    for _, p in checkpoints(out)[:-1]:
        for name in ("optimizer.pt", "scheduler.pt"):
            (p / name).unlink(missing_ok=True)


def cmd_evaluate(args: argparse.Namespace) -> list[dict[str, Any]]:
    _threads(args.threads)
    out = Path(args.out)
    run = json.loads((out / "run.json").read_text())
    held = _read_jsonl(out / "data_heldout.jsonl")
    if args.n:
        by_level: dict[int, list] = {}
        for p in held:
            by_level.setdefault(p["level"], []).append(p)
        held = [p for ps in by_level.values() for p in ps[: args.n]]
    target = out / "eval.jsonl"
    rows = _read_jsonl(target) if target.is_file() else []
    have = {r["step"] for r in rows if r.get("n") == len(held)}
    rows = [r for r in rows if r["step"] in have]
    todo = [(0, run["model"])] + [(s, str(p)) for s, p in checkpoints(out)]
    strict = run.get("reward", "correct") == "correct+stopped"  # as the run was rewarded
    for step, path in todo:
        if step in have:
            continue
        stopped: list[bool] = []
        answer_ok = greedy_accuracy(path, held, args.eval_tokens, stopped=stopped)
        ok = [a and s for a, s in zip(answer_ok, stopped, strict=True)] if strict else answer_ok
        k, n = sum(ok), len(ok)
        lo, hi = wilson(k, n)
        row: dict[str, Any] = {"step": step, "accuracy": k / n, "acc_lo": lo, "acc_hi": hi}
        row.update({"correct": k, "n": n, "checkpoint": path, "ok": [int(c) for c in ok]})
        row["accuracy_answer"] = sum(answer_ok) / n  # the answer right, stopped or not
        row["stopped"] = sum(stopped) / n
        row["ok_answer"] = [int(c) for c in answer_ok]
        for level in sorted({p["level"] for p in held}):
            got = [c for c, p in zip(ok, held, strict=True) if p["level"] == level]
            row[f"accuracy_level{level}"] = sum(got) / len(got)
        rows.append(row)
        rows.sort(key=lambda r: r["step"])
        _write_jsonl(target, rows)  # after each checkpoint: resumable
        print(f"step {step}: {k}/{n} = {k / n:.3f} ({lo:.3f}-{hi:.3f})", flush=True)
    return rows


def cmd_all(args: argparse.Namespace) -> None:
    root = Path(args.out)
    _refuse_inside_repo(root)
    root.mkdir(parents=True, exist_ok=True)
    mfile = root / "measure.json"
    me = [sys.executable, str(Path(__file__).resolve())]
    common = [
        "--model", args.model, "--threads", str(args.threads),
        "--num-generations", str(args.num_generations), "--batch", str(args.batch),
        "--max-tokens", str(args.max_tokens), "--lr", str(args.lr),
        "--temperature", str(args.temperature),
        "--require-stop" if args.require_stop else "--no-require-stop",
    ]  # fmt: skip
    if args.steps:
        steps = args.steps
    else:
        if not mfile.is_file():
            subprocess.run(
                [*me, "measure", "--out", str(root), "--n", "10", "--levels", "1,2,3",
                 "--budget-hours", str(args.budget_hours), "--eval-n", str(args.eval_n),
                 *common],
                check=True,
            )  # fmt: skip
        steps = int(json.loads(mfile.read_text())["suggested_steps"])
    levels = args.levels
    if args.auto_levels and mfile.is_file():
        pick = json.loads(mfile.read_text()).get("pick") or []
        levels = ",".join(map(str, pick)) or levels
    print(f"{steps} steps a run, levels {levels}", flush=True)
    runs = [(m, s) for s in range(args.seeds) for m in ("grpo", "hicra")]
    for method, seed in runs:  # train, then evaluate, run by run: a stop keeps whole runs
        subprocess.run(
            [*me, "train", "--method", method, "--seed", str(seed), "--steps", str(steps),
             "--out", str(root / f"{method}-s{seed}"), "--levels", levels,
             "--save-every", str(args.save_every), "--eval-n", str(args.eval_n), *common],
            check=True,
        )  # fmt: skip
        subprocess.run(
            [*me, "evaluate", "--out", str(root / f"{method}-s{seed}"),
             "--threads", str(args.threads), "--eval-tokens", str(args.eval_tokens)],
            check=True,
        )  # fmt: skip


def _sizes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="default | an HF folder")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--num-generations", type=int, default=8, help="completions per prompt")
    p.add_argument("--batch", type=int, default=16, help="completions per step")
    p.add_argument("--max-tokens", type=int, default=128, help="max completion tokens")
    p.add_argument("--lr", type=float, default=1e-6, help="learning rate")
    p.add_argument("--temperature", type=float, default=1.0, help="GRPO sampling temperature")
    p.add_argument("--levels", default="1,2", help="difficulty levels (operations), e.g. 1,2")
    p.add_argument("--eval-n", type=int, default=50, help="held-aside problems per level")
    p.add_argument(
        "--require-stop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reward (and held-aside accuracy) only for correct completions that stop",
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="start accuracy per level and GRPO step time")
    _sizes(m)
    m.set_defaults(levels="1,2,3")
    m.add_argument("--n", type=int, default=20, help="problems per level")
    m.add_argument("--eval-tokens", type=int, default=128, help="greedy tokens")
    m.add_argument("--time-steps", type=int, default=3, help="GRPO steps timed per method")
    m.add_argument("--budget-hours", type=float, default=2.0)
    m.add_argument("--out", default=None, help="folder for measure.json")
    t = sub.add_parser("train", help="one GRPO or HICRA run, resumable")
    _sizes(t)
    t.add_argument("--method", required=True, choices=["grpo", "hicra"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps", type=int, required=True, help="total optimizer steps")
    t.add_argument("--out", required=True, help="run folder (outside the repository)")
    t.add_argument("--save-every", type=int, default=25, help="checkpoint every N steps")
    t.add_argument("--n-train", type=int, default=200, help="training problems per level")
    e = sub.add_parser("evaluate", help="accuracy of every checkpoint on the held-aside set")
    e.add_argument("--out", required=True, help="run folder")
    e.add_argument("--n", type=int, default=0, help="problems per level (0: all saved)")
    e.add_argument("--eval-tokens", type=int, default=128, help="greedy tokens")
    e.add_argument("--threads", type=int, default=2)
    a = sub.add_parser("all", help="grpo and hicra x 2 seeds in a budget, then evaluate")
    _sizes(a)
    a.add_argument("--budget-hours", type=float, default=2.0)
    a.add_argument("--out", required=True, help="root folder (outside the repository)")
    a.add_argument("--seeds", type=int, default=2)
    a.add_argument("--steps", type=int, default=0, help="steps a run (0: from measure.json)")
    a.add_argument("--save-every", type=int, default=25)
    a.add_argument("--auto-levels", action="store_true", help="train on measure's picked levels")
    a.add_argument("--eval-tokens", type=int, default=128, help="greedy tokens in evaluate")
    return ap


def main(argv: list[str] | None = None) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parser().parse_args(argv)
    cmd = {"measure": cmd_measure, "train": cmd_train, "evaluate": cmd_evaluate, "all": cmd_all}
    return cmd[args.cmd](args)


if __name__ == "__main__":
    main()
