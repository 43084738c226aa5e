"""Atomic saving, checked loading and the random number generator states of a checkpoint."""

import contextlib
import functools
import hashlib
import io
import json
import os
import pathlib
import pickle
import random
import re
import shutil
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Collection, Iterable, Iterator
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sb3_dreamer.common.env_state import dummy_vec_env

#: Names of the temporary files of :func:`atomic_open`
TEMPORARY_FILE = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")
#: What a truncated or corrupted zip file or pickle can raise while it is read
CORRUPTED_FILE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, pickle.UnpicklingError, UnicodeDecodeError)


def corrupted_file_error(what: str, path: Any, exc: BaseException) -> ValueError:
    """:return: the error raised for a file that cannot be read back, naming the file"""
    return ValueError(f"Cannot load {what} from {path}: the file is truncated or corrupted ({type(exc).__name__}: {exc})")


def resolve_save_path(path: str | os.PathLike, suffix: str) -> pathlib.Path:
    """:return: the path SB3 saves to: ``path``, with ``.suffix`` appended when it has no suffix"""
    target = pathlib.Path(path)
    return target if target.suffix else pathlib.Path(f"{target}.{suffix}")


def resolve_load_path(path: str | os.PathLike, suffix: str) -> pathlib.Path:
    """:return: the path SB3 loads from: ``path`` if it exists, else ``path`` with ``.suffix`` appended"""
    source, with_suffix = pathlib.Path(path), pathlib.Path(f"{path}.{suffix}")
    return with_suffix if not source.exists() and with_suffix.exists() else source


def _fsync(path: pathlib.Path) -> None:
    """Flush a file, or the entries of a directory, to disk."""
    if os.name != "posix":
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_leftovers(target: pathlib.Path, keep: str | None = None) -> None:
    """
    Remove what saves of ``target`` wrote beside it, named ``.NAME.<12 hex digits>`` with or without ``.tmp`` appended
    (NAME the name of ``target``): the temporary files of :func:`atomic_open`, the directories and temporary links of
    :func:`atomic_directory`.

    :param keep: the name of the one to keep (the directory that ``target`` links to), None for none
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{12}}(\.tmp)?")
    for entry in target.parent.iterdir():
        if entry.name == keep or not pattern.fullmatch(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, suffix: str) -> Iterator[io.BufferedWriter]:
    """
    Open a temporary file beside the target for writing; on success, flush it to disk and rename it onto the
    target (atomic on POSIX), on failure delete it. The target is never left half-written; the temporary files that
    interrupted saves of the target left behind are removed.

    :param path: the target, completed with ``.suffix`` when it has none (as SB3 does)
    :param suffix: the suffix of the file type, without the dot
    """
    target = resolve_save_path(path, suffix)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with temporary.open("xb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync(target.parent)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, names: Collection[str]) -> Iterator[pathlib.Path]:
    """
    Yield a new empty directory to write files into; on success, flush them to disk and switch ``path`` to it at once.

    ``path`` is a symbolic link to a directory ``.NAME.<12 hex digits>`` beside it (NAME the name of ``path``), switched
    by renaming a new link onto it (atomic on POSIX): at every instant it names one complete directory, the previous
    one until the switch, the new one after it. The previous directory, and what interrupted saves left behind, are
    removed. A real directory at ``path`` (from an earlier version of this package) is replaced too, when it holds only
    some of ``names`` and temporary files of :func:`atomic_open`, but in two renames: ``path`` is missing in between.
    On failure the new directory is removed.

    :param path: the link to switch; its parent directory is created if needed
    :param names: the files that will be written
    :raises ValueError: when ``path`` is a file, or a directory that holds other files than ``names``
    """
    link = pathlib.Path(os.path.abspath(path))
    link.parent.mkdir(parents=True, exist_ok=True)
    current = os.readlink(link) if link.is_symlink() else None
    if current is None and link.is_dir():
        others = sorted(name for name in os.listdir(link) if name not in names and not TEMPORARY_FILE.fullmatch(name))
        if others:
            raise ValueError(f"Cannot save to {path}: it is a directory that holds other files than {sorted(names)}: {others}")
    elif current is None and link.exists():
        raise ValueError(f"Cannot save to {path}: it is a file, not a directory")
    _remove_leftovers(link, keep=current)
    directory = link.with_name(f".{link.name}.{uuid.uuid4().hex[:12]}")
    directory.mkdir()
    try:
        yield directory
    except BaseException:
        shutil.rmtree(directory)
        raise
    for entry in directory.iterdir():
        _fsync(entry)
    _fsync(directory)
    new_link = directory.with_name(f"{directory.name}.tmp")
    os.symlink(directory.name, new_link)
    if current is None and link.is_dir():
        # A rename cannot put a link in the place of a directory: move the directory aside first (removed below)
        os.rename(link, link.with_name(f".{link.name}.{uuid.uuid4().hex[:12]}"))
    os.replace(new_link, link)
    _fsync(link.parent)
    _remove_leftovers(link, keep=directory.name)


def file_digest(path: str | os.PathLike) -> str:
    """:return: the SHA-256 of a file, in hex"""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Keys of a model zip's ``data`` that SB3's ``load`` needs before it can build the model
MODEL_DATA_KEYS = ("observation_space", "action_space", "policy_class")


def check_model_file(path: str | os.PathLike | io.BufferedIOBase, what: str, state_dicts: Iterable[str]) -> None:
    """
    Read a model zip file through, checking every member's CRC, that its ``data`` is a JSON object with
    :data:`MODEL_DATA_KEYS`, and that it holds the state dicts that the model loads.

    :param path: the file (completed with ``.zip`` when missing, as SB3 does) or a file object, rewound afterwards
    :param what: what the file holds, for the error message
    :param state_dicts: names of the state dicts of the model (``"policy"`` for the member ``policy.pth``)
    :raises ValueError: naming the file, if it is truncated, corrupted or not such a model
    """
    source: Any = path if isinstance(path, io.IOBase) else resolve_load_path(path, "zip")
    start = source.tell() if isinstance(source, io.IOBase) else 0
    try:
        with zipfile.ZipFile(source) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                raise zipfile.BadZipFile(f"member {damaged} fails its CRC check")
            names = set(archive.namelist())
            if not {"data", "policy.pth"} <= names:
                # As in a truncated file, where the zip reader may find the directory of a member (itself a zip)
                raise zipfile.BadZipFile(f"members {sorted({'data', 'policy.pth'} - names)} are missing")
            data = json.loads(archive.read("data"))
    except (*CORRUPTED_FILE_ERRORS, json.JSONDecodeError) as exc:
        raise corrupted_file_error(what, path, exc) from exc
    finally:
        if isinstance(source, io.IOBase):
            source.seek(start)
    missing = sorted({f"{name}.pth" for name in state_dicts} - names)
    if missing:
        raise ValueError(f"Cannot load {what} from {path}: it lacks the members {missing} (a model of another algorithm?)")
    if not isinstance(data, dict):
        raise ValueError(f"Cannot load {what} from {path}: its data is a JSON {type(data).__name__}, not an object")
    missing = [key for key in MODEL_DATA_KEYS if key not in data]
    if missing:
        raise ValueError(f"Cannot load {what} from {path}: its data lacks the keys {missing}")


def load_pickle(path: str | os.PathLike | io.BufferedIOBase, suffix: str, what: str) -> Any:
    """
    Unpickle a file (only load files you trust: unpickling can run code).

    :param path: the file (completed with ``.suffix`` when missing, as SB3 does) or a file object
    :param suffix: the suffix of the file type, without the dot
    :param what: what the file holds, for the error message
    :raises ValueError: naming the file, if it cannot be unpickled
    """
    with contextlib.ExitStack() as stack:
        if isinstance(path, io.IOBase):
            file: Any = path
        else:
            file = stack.enter_context(resolve_load_path(path, suffix).open("rb"))
        try:
            return pickle.load(file)
        except Exception as exc:  # unpickling garbage can raise nearly any exception
            raise corrupted_file_error(what, path, exc) from exc


def get_rng_states(action_space: spaces.Space, device: th.device) -> dict[str, Any]:
    """
    :return: the states of Python's, NumPy's and PyTorch's global generators, of the generator of the model's CUDA
        device (None on another device) and of the action space's generator
    """
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": th.get_rng_state(),
        "cuda": th.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "action_space": action_space.np_random.bit_generator.state,
    }


def set_rng_states(states: dict[str, Any], action_space: spaces.Space, device: th.device) -> None:
    """
    Restore the generator states returned by :func:`get_rng_states` for a model on ``device``. A CUDA generator's
    state that cannot be restored (the model is not on a CUDA device now) is reported with a warning: sampling on the
    device then differs from an uninterrupted run.
    """
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    th.set_rng_state(states["torch"])
    cuda_state = states["cuda"]
    if isinstance(cuda_state, list):  # checkpoints that saved the generators of every visible GPU
        index = (device.index or 0) if device.type == "cuda" else 0
        cuda_state = cuda_state[index] if index < len(cuda_state) else cuda_state[0]
    if cuda_state is not None:
        if device.type == "cuda":
            th.cuda.set_rng_state(cuda_state, device)
        else:
            warnings.warn(
                f"The checkpoint holds the state of a CUDA generator, which cannot be restored for a model on {device}: "
                "random draws on the device differ from those of an uninterrupted run"
            )
    action_space.np_random.bit_generator.state = states["action_space"]


def vec_env_state(env: VecEnv | None) -> bytes | None:
    """
    :return: the gym envs of ``env`` pickled with cloudpickle, when ``env`` is a ``DummyVecEnv``, possibly in a
        ``VecTransposeImage`` (other VecEnv wrappers have state of their own), and its envs can be pickled; else None
    """
    inner = dummy_vec_env(env) if env is not None else None
    if inner is None:
        return None
    try:
        return cloudpickle.dumps(inner.envs)
    except Exception as exc:  # what fails to pickle raises PicklingError, TypeError, AttributeError...
        warnings.warn(f"The envs cannot be pickled ({exc!r}): the checkpoint does not hold their state")
        return None


def _identity(env: gym.Env) -> gym.Env:
    return env


def make_vec_env_from_state(state: bytes) -> DummyVecEnv:
    """:return: a ``DummyVecEnv`` of the envs pickled by :func:`vec_env_state`, in the state they were saved in"""
    return DummyVecEnv([functools.partial(_identity, env) for env in cloudpickle.loads(state)])
