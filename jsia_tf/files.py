"""Writing a file so that a failure never leaves it half-written.

Every file that results or resumes depend on (config.json, reports, features files,
manifests, the metrics log when a resume trims it, experiment tables, figures) is
written to a temporary name beside it and renamed into place. A failure (disk full,
permissions, a path that is a folder) removes the temporary file, leaves any earlier
version untouched, and becomes an `OutputError` naming the path and the reason.
"""

import os
from typing import Callable, IO

from jsia_tf import errors


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = False,
                 suffix: str = "") -> None:
  """Calls `write(f)` on a temporary file beside `path`, then renames it to `path`.
  `suffix` is kept at the end of the temporary name (numpy's savez appends ".npz"
  to a name without it)."""
  folder = os.path.dirname(os.path.abspath(path))
  tmp = f"{path}.tmp-{os.getpid()}{suffix}"
  try:
    if os.path.isdir(path):
      raise IsADirectoryError(21, "is a directory, not a file", path)
    os.makedirs(folder, exist_ok=True)
    with open(tmp, "wb" if binary else "w") as f:
      write(f)
    os.replace(tmp, path)
  except OSError as e:
    remove(tmp)
    raise errors.OutputError(f"cannot write {path} ({errors.cause(e)}); nothing was "
                             f"written there") from None
  except BaseException:
    remove(tmp)
    raise


def make_folder(path: str, flag: str, holds: str) -> None:
  """Creates the output folder `path` (and its parents) given by `--flag`; a file in
  its place is a ConfigError naming the flag and what the folder `holds`."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise errors.ConfigError(f"--{flag}={path} is a file: expected a folder for {holds}")
  os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
  """Removes a file if it is there; a file that cannot be removed is left."""
  try:
    os.remove(path)
  except OSError:
    pass
