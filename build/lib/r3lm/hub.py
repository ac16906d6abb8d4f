"""Models and datasets from the Hugging Face hub, or the local folders a user puts in their place."""

from __future__ import annotations

from pathlib import Path

from r3lm.errors import InputError

LOCAL_PREFIXES = ("/", "./", "../", "~")  # a name that starts so is a folder, never a hub id


def local_copy(name_or_path: str | Path, *, what: str = "model", repo_type: str = "model") -> str:
    """A folder as given, or a hub id (a model, or a dataset such as CRE-ReasonBench) fetched into the
    Hugging Face cache.

    The cache answers first, so a snapshot downloaded once loads offline; with no network and no cached copy
    the error says how to fetch it and where to point the config instead of a long connection trace.
    """
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir():
        return str(path)
    name = str(name_or_path)
    if name.startswith(LOCAL_PREFIXES) or name.count("/") != 1:
        raise InputError(f"{what} is neither a folder nor a hub id (owner/name)", path=name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id=name, repo_type=repo_type, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    try:
        return snapshot_download(repo_id=name, repo_type=repo_type)
    except Exception as error:  # noqa: BLE001 - any hub failure gets the same one-line advice
        command = f"hf download {name}" + (" --repo-type dataset" if repo_type == "dataset" else "")
        raise InputError(f"cannot download {what} {name} ({type(error).__name__}); with no network, fetch it "
                         f"elsewhere with `{command} --local-dir DIR`, copy DIR here and give that folder instead "
                         "of the hub id") from None
