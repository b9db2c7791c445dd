"""Finding the newest checkpoint that loads.

TensorFlow's `checkpoint` state file is a cache: a run can lose it, or find it
truncated or naming a checkpoint whose files a crash, a full disk or a hand cut short.
The truth is the directory itself. A checkpoint counts as loadable when its index
parses, every tensor reads back and every float tensor is finite: TensorFlow's bundle
format stores a CRC32C of each tensor in the index and checks it on every read, so a
flipped bit or a cut data file is caught without a checksum of our own.
"""

import os
import re
from typing import Callable, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from jsia_tf import errors

Log = Callable[[str], None]
STATE_FILE = "checkpoint"
_PREFIX = re.compile(r"^(ckpt-(\d+))\.index$")


def list_prefixes(directory: str) -> List[str]:
  """Checkpoint prefixes in `directory` that have an index file, newest step first."""
  try:
    names = os.listdir(directory)
  except (FileNotFoundError, NotADirectoryError):
    return []
  found = [(int(m.group(2)), m.group(1)) for m in map(_PREFIX.match, names) if m]
  return [os.path.join(directory, name) for _, name in sorted(found, reverse=True)]


def has_checkpoint_files(directory: str) -> bool:
  """Whether `directory` holds any checkpoint file (index or data), loadable or not."""
  try:
    return any(n.startswith("ckpt-") for n in os.listdir(directory))
  except (FileNotFoundError, NotADirectoryError):
    return False


def unreadable_reason(prefix: str) -> Optional[str]:
  """None when every tensor of `prefix` reads back (CRC checked) and every float
  tensor is finite; else why not. A checkpoint holding NaN or Inf is as good as
  lost: a run resumed from it, or an export of it, only carries the NaN on."""
  try:
    reader = tf.train.load_checkpoint(prefix)
    for name in sorted(reader.get_variable_to_shape_map()):
      value = reader.get_tensor(name)
      if (getattr(value, "dtype", None) is not None and value.dtype.kind == "f"
          and not np.all(np.isfinite(value))):
        return f"{name} holds NaN or Inf"
  except Exception as e:  # pylint: disable=broad-except
    # TensorFlow's reader raises DataLossError, NotFoundError, IndexError ("Read less
    # bytes than requested"), ValueError, ...: any of them means the file is bad.
    return errors.cause(e).splitlines()[0] if str(e) else type(e).__name__
  return None


def newest_loadable(directory: str, log: Log = print, repair: bool = False
                    ) -> Optional[str]:
  """The newest checkpoint in `directory` that loads; each newer one that does not
  is named with its reason in a warning and skipped. None when the directory holds
  no checkpoint files; a CheckpointError listing every one tried when it holds some
  and none loads. With `repair` (a run about to resume and save there), the state
  file is made to name the checkpoint found, so that TensorFlow's CheckpointManager
  agrees with it (it raises on a state file it cannot parse)."""
  tried: List[Tuple[str, str]] = []
  for prefix in list_prefixes(directory):
    reason = unreadable_reason(prefix)
    if reason is None:
      if repair:
        _sync_state_file(directory, prefix, log)
      return prefix
    log(f"warning: checkpoint {prefix} cannot be read ({reason}): skipped, trying "
        f"an older one")
    tried.append((prefix, reason))
  if tried or has_checkpoint_files(directory):
    listing = "; ".join(f"{p}: {r}" for p, r in tried) or "no ckpt-N.index file"
    raise errors.CheckpointError(
        f"no checkpoint in {directory} can be read (tried: {listing}). To train again "
        f"from step 0, move {directory} away or use another --workdir")
  return None


def _sync_state_file(directory: str, prefix: str, log: Log) -> None:
  path = os.path.join(directory, STATE_FILE)
  try:
    state = tf.train.get_checkpoint_state(directory)
    named = os.path.basename(state.model_checkpoint_path) if state else None
  except Exception:  # pylint: disable=broad-except
    named = None  # a truncated or garbled file: protobuf's text parser raises
  if named == os.path.basename(prefix):
    return
  log(f"warning: {path} is missing, unreadable or names another checkpoint "
      f"({named}): it now names {prefix}, the newest that loads")
  older = [p for p in reversed(list_prefixes(directory)) if _step(p) <= _step(prefix)]
  tf.compat.v1.train.update_checkpoint_state(directory, prefix,
                                             all_model_checkpoint_paths=older)


def _step(prefix: str) -> int:
  return int(prefix.rsplit("-", 1)[1])
