"""Files on any TensorFlow filesystem (local paths, gs://, s3://, hdfs://, ram://, ...).

Every reader and writer of the data root, the concept files, the model folders, the
assembled model and the reports goes through here, and this module goes through
`tf.io.gfile`, so a data root or a work dir may live wherever TensorFlow can reach.

TensorFlow is imported on the first call, not on import, so modules documented as light
(`concepts`, `evaluation.report`, `training.config`) stay light to import.

The builtin exceptions are kept for every filesystem: a missing file raises
`FileNotFoundError` with the message `open` gives ("[Errno 2] No such file or directory:
'<path>'"), an existing target `FileExistsError`, a refused access `PermissionError`, any
other filesystem failure `OSError` naming the path. `open_file` returns a standard Python
stream (`io.TextIOWrapper` or `io.Buffered*`), so `csv`, `json`, `numpy`, `pyarrow` and
`PIL` read and write through it as through `open`.

Paths are joined with `os.path.join` as before (URLs use "/" too); `normpath` and `abspath`
here leave a URL's "scheme://" intact.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

_BUFFER_BYTES = 1 << 20  # Python-side buffer of a stream: one filesystem call per MiB
_SCHEME = "://"


def _gfile() -> Any:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.io.gfile


def _tf_errors() -> Any:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.errors


# -- errors ---------------------------------------------------------------------------------


def _builtin_error(error: Exception, path: str) -> OSError:
    """The builtin OSError that `os`/`open` would raise for a `tf.errors.OpError`."""
    errors = _tf_errors()
    message = getattr(error, "message", str(error)) or ""
    if isinstance(error, errors.NotFoundError):
        return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    if isinstance(error, errors.AlreadyExistsError):
        return FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
    if isinstance(error, errors.PermissionDeniedError):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    if "Is a directory" in message:
        return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if "Not a directory" in message:
        return NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    return OSError(f"{path}: {message or type(error).__name__}")


@contextlib.contextmanager
def _os_errors(path: str) -> Iterator[None]:
    """Turns `tf.errors.OpError` raised inside into the builtin OSError naming `path`."""
    try:
        yield
    except Exception as e:  # pylint: disable=broad-except
        if isinstance(e, _tf_errors().OpError):
            raise _builtin_error(e, path) from None
        raise


# -- paths ----------------------------------------------------------------------------------


def is_local(path: str) -> bool:
    """True for a path of the local filesystem (no "scheme://" prefix)."""
    return _SCHEME not in str(path)


def _split_scheme(path: str) -> tuple[str, str]:
    scheme, _, rest = str(path).partition(_SCHEME)
    return scheme + _SCHEME, rest


def normpath(path: str) -> str:
    """`os.path.normpath`, keeping a URL's "scheme://" (gs://b/x/../y -> gs://b/y)."""
    if is_local(path):
        return os.path.normpath(path)
    prefix, rest = _split_scheme(path)
    return prefix + (posixpath.normpath(rest) if rest else "")


def abspath(path: str) -> str:
    """`os.path.abspath` for a local path; a URL (already absolute) normalised."""
    return os.path.abspath(path) if is_local(path) else normpath(path)


def sibling_path(path: str, tag: str) -> str:
    """A unique hidden name beside `path` (".<name>.<tag>-<random>"), for staging."""
    path = str(path).rstrip("/") or str(path)
    folder, name = os.path.dirname(path), os.path.basename(path)
    return os.path.join(folder, f".{name}.{tag}-{uuid.uuid4().hex[:12]}")


# -- queries --------------------------------------------------------------------------------


def exists(path: str) -> bool:
    """Whether a file or folder exists (`os.path.exists`)."""
    with _os_errors(path):
        return bool(_gfile().exists(path))


def isdir(path: str) -> bool:
    """Whether `path` is a folder (`os.path.isdir`)."""
    with _os_errors(path):
        return bool(_gfile().isdir(path))


def isfile(path: str) -> bool:
    """Whether `path` is a file (`os.path.isfile`)."""
    return exists(path) and not isdir(path)


def listdir(path: str) -> list[str]:
    """The names in a folder (`os.listdir`; no trailing "/" on folder names).

    Raises:
        FileNotFoundError: `path` is not a folder.
    """
    with _os_errors(path):
        return [name.rstrip("/") for name in _gfile().listdir(path)]


def glob(pattern: str) -> list[str]:
    """Paths matching a glob pattern, sorted."""
    with _os_errors(pattern):
        return sorted(_gfile().glob(pattern))


def getsize(path: str) -> int:
    """Size of a file in bytes (`os.path.getsize`)."""
    with _os_errors(path):
        return int(_gfile().stat(path).length)


def getmtime(path: str) -> float:
    """Modification time in seconds since the epoch, as the filesystem reports it (the local
    filesystem through TensorFlow: whole seconds)."""
    with _os_errors(path):
        nanoseconds = int(_gfile().stat(path).mtime_nsec)
    return nanoseconds // 10**9 + (nanoseconds % 10**9) * 1e-9


# -- folders and moves ----------------------------------------------------------------------


def makedirs(path: str, exist_ok: bool = True) -> None:
    """Creates a folder and its parents (`os.makedirs`, by default with `exist_ok`).

    Raises:
        FileExistsError: `path` exists and `exist_ok` is False.
    """
    if not exist_ok and exists(path):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
    with _os_errors(path):
        _gfile().makedirs(path)


def remove(path: str) -> None:
    """Deletes a file (`os.remove`)."""
    with _os_errors(path):
        _gfile().remove(path)


def rmtree(path: str, ignore_errors: bool = False) -> None:
    """Deletes a folder and everything in it (`shutil.rmtree`)."""
    try:
        with _os_errors(path):
            _gfile().rmtree(path)
    except OSError:
        if not ignore_errors:
            raise


def replace(src: str, dst: str) -> None:
    """Renames file `src` to `dst`, replacing `dst` (`os.replace`; atomic where the
    filesystem's rename is, as on a local disk)."""
    with _os_errors(src):
        _gfile().rename(src, dst, overwrite=True)


def rename(src: str, dst: str) -> None:
    """Renames a file or a folder to `dst`, which must not exist.

    A local folder is renamed at once (`os.rename`, atomic). Other filesystems move a folder
    file by file (object stores have no folders to rename: gs:// renames object by object
    too, and ram:// would not move the files inside), then delete `src`.

    Raises:
        FileExistsError: `dst` exists.
    """
    if not is_local(src) and isdir(src):
        if exists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
        for folder, _, names in list(walk(src)):  # listed before anything moves
            target = os.path.join(dst, os.path.relpath(folder, src)) if folder != src else dst
            makedirs(target)
            for name in names:
                with _os_errors(os.path.join(folder, name)):
                    _gfile().rename(os.path.join(folder, name), os.path.join(target, name))
        rmtree(src)
        return
    try:
        _gfile().rename(src, dst, overwrite=False)
    except _tf_errors().OpError as e:
        raise _builtin_error(e, dst if isinstance(e, _tf_errors().AlreadyExistsError)
                             else src) from None


def replace_folder(staging: str, path: str) -> None:
    """Puts the complete folder `staging` at `path`, replacing a folder there.

    The old folder is moved aside (to a `sibling_path`) first and deleted only once the
    new one is in place, so `path` never holds a half-written folder.
    """
    if exists(path):
        old = sibling_path(abspath(path), "old")
        rename(path, old)
        rename(staging, path)
        rmtree(old)
    else:
        rename(staging, path)


def walk(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """(folder, subfolder names, file names) for `top` and every folder below (`os.walk`)."""
    with _os_errors(top):
        for folder, subfolders, names in _gfile().walk(top):
            yield (folder.rstrip("/") or folder, [d.rstrip("/") for d in subfolders],
                   list(names))


def copy(src: str, dst: str, overwrite: bool = False) -> None:
    """Copies a file, possibly between filesystems (`shutil.copyfile`)."""
    with _os_errors(src):
        _gfile().copy(src, dst, overwrite=overwrite)


def copytree(src: str, dst: str) -> None:
    """Copies a folder recursively, possibly between filesystems (`shutil.copytree`)."""
    for folder, _, names in walk(src):
        relative = os.path.relpath(folder, src) if folder != src else ""
        target = os.path.join(dst, relative) if relative else dst
        makedirs(target)
        for name in names:
            copy(os.path.join(folder, name), os.path.join(target, name), overwrite=True)


# -- streams --------------------------------------------------------------------------------


class _GFileStream(io.RawIOBase):
    """A `tf.io.gfile.GFile` as a raw binary stream, to be wrapped by `io.Buffered*`."""

    def __init__(self, path: str, writing: bool) -> None:
        super().__init__()
        self._path = path
        self._writing = writing
        self._file = None
        self._written = 0  # bytes written (not every filesystem's writer has tell())
        with _os_errors(path):
            gfile = _gfile().GFile(path, "wb" if writing else "rb")
            # Open now, as `open` does (a GFile opens on first use).
            if writing:
                gfile.write(b"")
            else:
                gfile.tell()
        self._file = gfile

    @property
    def name(self) -> str:
        return self._path

    def readable(self) -> bool:
        return not self._writing

    def writable(self) -> bool:
        return self._writing

    def seekable(self) -> bool:
        return not self._writing

    def readinto(self, buffer: Any) -> int:
        with _os_errors(self._path):
            data = self._file.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        with _os_errors(self._path):
            return self._file.read()

    def write(self, data: Any) -> int:
        data = bytes(data)
        with _os_errors(self._path):
            self._file.write(data)
        self._written += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self._writing:
            raise io.UnsupportedOperation("seek")
        with _os_errors(self._path):
            self._file.seek(offset, whence)
            return self._file.tell()

    def tell(self) -> int:
        if self._writing:
            return self._written
        with _os_errors(self._path):
            return self._file.tell()

    def close(self) -> None:
        if not self.closed:
            try:
                if self._file is not None:
                    with _os_errors(self._path):
                        self._file.close()
            finally:
                super().close()


def open_file(path: str, mode: str = "r", encoding: str | None = None,
              errors: str | None = None, newline: str | None = None) -> IO[Any]:
    """Opens a file like `open`: text ("r", "w") or binary ("rb", "wb").

    Text defaults to UTF-8; `encoding`, `errors` and `newline` mean what they mean for
    `open` ("utf-8-sig" skips a byte-order mark, newline="" for `csv`). A file opened for
    writing may only appear once closed (object stores upload on close).

    Raises:
        FileNotFoundError: Reading a missing file, or writing into a missing folder.
        ValueError: Another mode.
    """
    if mode not in ("r", "rb", "w", "wb"):
        raise ValueError(f"mode must be 'r', 'rb', 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    writing = mode.startswith("w")
    raw = _GFileStream(path, writing)
    stream: IO[Any] = (io.BufferedWriter(raw, _BUFFER_BYTES) if writing
                       else io.BufferedReader(raw, _BUFFER_BYTES))
    if "b" in mode:
        return stream
    return io.TextIOWrapper(stream, encoding=encoding or "utf-8", errors=errors,
                            newline=newline)


def read_text(path: str, encoding: str = "utf-8") -> str:
    """The whole file as text."""
    with open_file(path, "r", encoding=encoding) as f:
        return f.read()


def write_atomically(path: str, content: str | bytes) -> None:
    """Writes `content` to a hidden file beside `path`, then renames it over `path`, so a
    reader sees the old file or the new one, never half of one (on filesystems whose rename
    is atomic, as a local disk's)."""
    temp = sibling_path(path, "tmp")
    try:
        with open_file(temp, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
        replace(temp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            if exists(temp):
                remove(temp)
        raise


# -- JSON and numpy -------------------------------------------------------------------------


def read_json(path: str) -> Any:
    """A JSON file, parsed (`json.JSONDecodeError` and `UnicodeDecodeError` propagate)."""
    with open_file(path, "r", encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, content: Any, **dump_args: Any) -> None:
    """Writes `content` as JSON (`dump_args` go to `json.dump`, e.g. indent)."""
    with open_file(path, "w", encoding="utf-8") as f:
        json.dump(content, f, **dump_args)


def load_npy(path: str, allow_pickle: bool = False) -> np.ndarray:
    """An array written by `save_npy` or `np.save`."""
    with open_file(path, "rb") as f:
        return np.load(f, allow_pickle=allow_pickle)


def save_npy(path: str, array: np.ndarray) -> None:
    """Writes an array in .npy format (`np.save` to exactly `path`)."""
    with open_file(path, "wb") as f:
        np.save(f, np.asanyarray(array), allow_pickle=False)


def load_npz(path: str, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """All arrays of an .npz file (read at once), by name."""
    with open_file(path, "rb") as f, np.load(f, allow_pickle=allow_pickle) as data:
        return {name: data[name] for name in data.files}


def save_npz(path: str, **arrays: np.ndarray) -> None:
    """Writes arrays in .npz format (`np.savez` to exactly `path`)."""
    with open_file(path, "wb") as f:
        np.savez(f, **arrays)
