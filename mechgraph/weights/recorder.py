"""Record an RL run's samples and planning/execution metrics while TRL's GRPO trains.

:class:`PhaseRecorder` is a ``transformers.TrainerCallback``; it needs a trainer built with
:func:`make_recording_trainer` (``RecorderMixin`` in front of ``trl.GRPOTrainer`` or of
mechgraph's HICRA trainer class), which hands it what TRL computed anyway:

* the generated batch (``_generate_and_score_completions``): prompts, completion ids and
  masks, and the rewards (``_calculate_rewards``), all reused as they are;
* the per-token log-probs of the sampled tokens and the per-token entropies TRL's
  ``_compute_loss`` computes in its own forward pass (grabbed, detached, from its call of
  ``_get_per_token_logps_and_entropies(..., compute_entropy=True)``): exact reuse, no
  second forward pass. With ``num_iterations > 1`` later iterations see the updated policy,
  as TRL's own ``entropy`` metric does.

Computed on top (no model call): the completion texts and their tokens' char offsets
(:func:`mechgraph.weights.online.batch_tokens`, the trainer's tokenizer), planning spans
(:class:`~mechgraph.labels.sources.PlanningSource`) mapped onto those tokens, strategic-gram
counts, and masked means of the captured tensors (``torch.no_grad``).

Every ``every`` optimizer steps the step's fresh completions are appended to a trace JSONL
(:func:`mechgraph.traces.load_traces` reads it; ``mechgraph phases`` takes it) and
``phases/*`` metrics go to the trainer's log (so into ``trainer_state.json``).

Examples
--------
>>> Trainer = make_recording_trainer()  # doctest: +SKIP
>>> rec = PhaseRecorder("run/traces.jsonl", planning="sg:hicra")  # doctest: +SKIP
>>> Trainer(model=m, reward_funcs=r, args=cfg, train_dataset=ds, callbacks=[rec]).train()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mechgraph.errors import ConfigError
from mechgraph.io import write_text_atomic
from mechgraph.phases.stats import shannon_entropy

try:  # the callback base; mechgraph imports without transformers
    from transformers import TrainerCallback as _Callback
except ImportError:  # pragma: no cover
    _Callback = object  # type: ignore[assignment,misc]

__all__ = ["METRICS", "PhaseRecorder", "RecorderMixin", "make_recording_trainer"]

ROW_KEY = "phases_row"
METRICS = (
    "phases/entropy_plan",
    "phases/entropy_exec",
    "phases/logp_plan",
    "phases/logp_exec",
    "phases/planning_share",
    "phases/semantic_entropy",
)

Checker = Callable[[str, dict], bool]
"""``(completion_text, dataset_row) -> correct``."""


class RecorderMixin:
    """Hand TRL GRPO's generated batches and loss-forward tensors to :class:`PhaseRecorder`.

    Put it first in the bases (:func:`make_recording_trainer`). Every ``PhaseRecorder`` among
    the trainer's callbacks is bound to it. A row index (``phases_row``) travels with the
    batch through TRL's shuffle and split, so each loss micro-batch's rows are found in
    the generated batch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phases_gen: dict[str, Any] | None = None
        self._phases_micro: list[dict[str, Any]] = []
        self._phases_rows = 0
        self._phases_rewards = None
        self._phases_inputs: dict[str, Any] | None = None
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, PhaseRecorder):
                cb.bind(self)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._phases_rewards = rewards
        return rewards

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        import torch

        out = super()._generate_and_score_completions(inputs)
        if not self.model.training:
            return out
        ids = out["completion_ids"]
        B = ids.size(0)
        rewards = None
        if self._phases_rewards is not None:
            r = self._phases_rewards
            total = (r * self.reward_weights.to(r.device).unsqueeze(0)).nansum(dim=1)
            start = self.accelerator.process_index * B
            rewards = total[start : start + B].float().cpu().numpy()
        row0 = self._phases_rows
        self._phases_rows += B
        out[ROW_KEY] = torch.arange(row0, row0 + B, device=ids.device)
        self._phases_gen = {
            "row0": row0,
            "ids": ids.detach().cpu(),
            "mask": out["completion_mask"].detach().cpu(),
            "prompt_ids": out["prompt_ids"].detach().cpu(),
            "prompt_mask": out["prompt_mask"].detach().cpu(),
            "examples": list(inputs),
            "rewards": rewards,
            "new": True,
            "tokens": None,  # BatchTokens, computed by the recorder when needed
            "semantic_entropy": None,
        }
        return out

    def _compute_loss(self, model, inputs):  # type: ignore[no-untyped-def]
        self._phases_inputs = inputs if (model.training and ROW_KEY in inputs) else None
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._phases_inputs = None

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        logps, ent, aux = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        inp = self._phases_inputs
        if inp is not None and kwargs.get("compute_entropy") and ent is not None:
            self._phases_inputs = None  # only the loss forward's own call
            mask = inp["completion_mask"]
            if "tool_mask" in inp:
                mask = mask * inp["tool_mask"]
            self._phases_micro.append(
                {
                    "rows": inp[ROW_KEY].detach(),
                    "mask": mask.detach(),
                    "logps": logps.detach(),
                    "entropies": ent.detach(),
                }
            )
        return logps, ent, aux


def make_recording_trainer(base: Any = None) -> type:
    """``RecorderMixin`` on ``base`` (default ``trl.GRPOTrainer``; or a HICRA trainer class).

    Examples
    --------
    >>> from mechgraph.weights.trl import make_grpo_trainer_class  # doctest: +SKIP
    >>> Trainer = make_recording_trainer(make_grpo_trainer_class())  # doctest: +SKIP
    """
    if base is None:
        try:
            from trl import GRPOTrainer as base
        except ImportError as e:
            raise ConfigError(f"the phase recorder needs trl (pip install trl): {e}") from None
    return type(f"Recording{base.__name__}", (RecorderMixin, base), {"__module__": __name__})


def _gram_matcher(grams: Any) -> Any:
    from mechgraph.labels import GramMatcher, grams_path, load_grams

    if hasattr(grams, "find_grams"):
        return grams
    if hasattr(grams, "matcher"):
        return grams.matcher()
    if isinstance(grams, str | os.PathLike):
        s = str(grams)
        return load_grams(grams_path(s[3:] if s.startswith("sg:") else s)).matcher()
    return GramMatcher(grams)


def _append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append ``lines`` with one ``O_APPEND`` write and an fsync."""
    data = "".join(lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class PhaseRecorder(_Callback):  # type: ignore[misc,valid-type]
    """Append a GRPO run's completions as traces and log planning/execution metrics.

    Parameters
    ----------
    path : str or Path
        Trace JSONL (appended; created if absent). Rows: ``id`` (``"{step}/{k}"``),
        ``prompt``, ``text``, ``checkpoint`` (the global step), ``reward`` (TRL's weighted
        total), ``correct`` (with ``checker``). Empty completions are left out
        (``load_traces`` refuses empty texts).
    planning : str, callable or PlanningSource
        Planning spans (``sg:hicra``, ``sg``, ``rules``, ``probe:PATH``, ``text -> spans``).
    grams : path, list of str or matcher
        Strategic grams for ``phases/semantic_entropy`` (default HICRA's list).
    every : int
        Record every ``every`` optimizer steps.
    checker : callable, optional
        ``(text, dataset_row) -> bool`` for ``correct``.

    Notes
    -----
    Logged per recorded step (token-weighted over the step's loss micro-batches):
    ``phases/entropy_plan``, ``phases/entropy_exec``, ``phases/logp_plan``,
    ``phases/logp_exec`` (means over planning / execution response tokens; NaN, which TRL
    drops, when a side has no token), ``phases/planning_share`` and
    ``phases/semantic_entropy`` (Shannon entropy, nats, of the gram counts over the
    generated batch). ``self.last`` keeps the last recorded step's inputs.

    On train start the ids already in ``path`` are read: steps present there are not
    written again (a resumed run does not duplicate rows); a torn last line is dropped, and
    so are rows of steps after the checkpoint a run resumes from (written by the
    interrupted run past its last checkpoint, a trajectory the resumed run does not follow).
    Multi-process runs: every process writes its own rows only when ``path`` differs per
    process; rows are written by the main process only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        planning: Any = "sg:hicra",
        grams: Any = "hicra",
        every: int = 1,
        checker: Checker | None = None,
    ) -> None:
        from mechgraph.labels.sources import planning_source

        if every < 1:
            raise ConfigError(f"every must be >= 1, got {every}")
        self.path = Path(path)
        self.planning = planning_source(planning)
        self.matcher = _gram_matcher(grams)
        self.every = every
        self.checker = checker
        self.done_steps: set[int] = set()
        self.last: dict[str, Any] = {}
        self._trainer: Any = None

    def bind(self, trainer: Any) -> None:
        self._trainer = trainer

    # -- file ------------------------------------------------------------------------------
    def _read_existing(self, resumed_at: int = 0) -> None:
        self.done_steps = set()
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        torn = bool(raw) and not raw.endswith(b"\n")
        if torn:  # torn tail of an interrupted append
            raw = raw[: raw.rfind(b"\n") + 1]
        lines = raw.decode("utf-8").splitlines()
        keep: list[str] = []
        for line in lines:
            if not line.strip():
                continue
            step = str(json.loads(line)["id"]).split("/", 1)[0]
            if step.isdigit() and int(step) > resumed_at > 0:
                continue  # generated after the checkpoint resumed from: an abandoned branch
            keep.append(line + "\n")
            if step.isdigit():
                self.done_steps.add(int(step))
        if torn or len(keep) < len(lines):
            write_text_atomic(self.path, "".join(keep))

    # -- callback --------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self._trainer is None:
            raise ConfigError(
                "PhaseRecorder needs a trainer from mechgraph.weights.recorder."
                "make_recording_trainer (it reuses the trainer's batches and entropies)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read_existing(int(state.global_step))  # the step resumed from (0: a fresh run)
        return control

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        tr = self._trainer
        if tr is None:
            return control
        micro, tr._phases_micro = tr._phases_micro, []
        gen = tr._phases_gen
        step = int(state.global_step)
        fresh = gen is not None and gen["new"]
        if gen is not None:
            gen["new"] = False
        if gen is None or step % self.every:
            return control
        bt = self._tokens(tr, gen)
        if fresh and step not in self.done_steps and state.is_world_process_zero:
            _append_lines(self.path, self._rows(tr, gen, bt, step))
            self.done_steps.add(step)
        metrics = self._metrics(gen, bt, micro)
        store = getattr(tr, "_metrics", None)
        if isinstance(store, dict) and "train" in store:
            for k, v in metrics.items():
                store["train"][k].append(v)
        self.last = {"step": step, "gen": gen, "tokens": bt, "micro": micro, "metrics": metrics}
        return control

    # -- pieces ----------------------------------------------------------------------------
    def _tokens(self, tr: Any, gen: dict[str, Any]) -> Any:
        from mechgraph.weights.online import batch_tokens

        if gen["tokens"] is None:
            gen["tokens"] = batch_tokens(
                tr.processing_class, gen["ids"], gen["mask"], planning=self.planning
            )
            counts = Counter(g for t in gen["tokens"].texts for g in self.matcher.find_grams(t))
            vals = np.array(list(counts.values()), dtype=float)
            gen["semantic_entropy"] = float(shannon_entropy(vals)) if len(vals) else 0.0
        return gen["tokens"]

    def _rows(self, tr: Any, gen: dict[str, Any], bt: Any, step: int) -> list[str]:
        tok = tr.processing_class
        lines = []
        for k, text in enumerate(bt.texts):
            if not text:
                continue
            ex = gen["examples"][k] if k < len(gen["examples"]) else {}
            prompt = ex.get("prompt") if isinstance(ex, dict) else None
            if not isinstance(prompt, str):  # conversational: the tokens the model saw
                pm = gen["prompt_mask"][k].bool()
                prompt = tok.decode(gen["prompt_ids"][k][pm].tolist(), skip_special_tokens=False)
            rec: dict[str, Any] = {"id": f"{step}/{k}", "prompt": prompt, "text": text}
            rec["checkpoint"] = step
            if gen["rewards"] is not None:
                r = float(gen["rewards"][k])
                rec["reward"] = r if np.isfinite(r) else None
            if self.checker is not None:
                rec["correct"] = bool(self.checker(text, ex))
            lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
        return lines

    def _metrics(self, gen: dict[str, Any], bt: Any, micro: list[dict[str, Any]]) -> dict:
        import torch

        sums = torch.zeros(7, dtype=torch.float64)  # n_plan, n_exec, ent_p, ent_e, lp_p, lp_e
        plan_grid = torch.as_tensor(bt.planning)
        with torch.no_grad():
            for m in micro:
                local = m["rows"].cpu() - gen["row0"]
                if (local < 0).any() or (local >= plan_grid.shape[0]).any():
                    continue  # a micro-batch of an older generation
                mask = m["mask"].bool()
                plan = plan_grid[local].to(mask.device) & mask
                exe = mask & ~plan
                ent, lp = m["entropies"].double(), m["logps"].double()
                part = torch.stack(
                    [
                        plan.sum(),
                        exe.sum(),
                        (ent * plan).sum(),
                        (ent * exe).sum(),
                        (lp * plan).sum(),
                        (lp * exe).sum(),
                        mask.sum(),
                    ]
                ).double()
                sums += part.cpu()
        n_p, n_e, e_p, e_e, l_p, l_e, n = sums.tolist()
        nan = float("nan")
        return {
            "phases/entropy_plan": e_p / n_p if n_p else nan,
            "phases/entropy_exec": e_e / n_e if n_e else nan,
            "phases/logp_plan": l_p / n_p if n_p else nan,
            "phases/logp_exec": l_e / n_e if n_e else nan,
            "phases/planning_share": n_p / n if n else nan,
            "phases/semantic_entropy": gen["semantic_entropy"],
        }
