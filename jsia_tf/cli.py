"""Shared plumbing of the command-line entry points (absl apps)."""

import gc
import os
import sys

from absl import app
from absl import flags
from absl import logging

from jsia_tf import console
from jsia_tf import errors


def run(main):
  """Runs `main(argv)` as an absl app; a `JsiaError` becomes `error: ...` and exit 2.

  User errors (a missing directory, a malformed split file, a bad flag value) are
  expected outcomes with messages written for people, so they are printed without a
  traceback. So is an operating system's refusal that no writer turned into one (a
  full disk, a permission): `error: PATH: reason`. A closed stdout (`| head`) ends
  the program quietly with status 0. Anything else is a bug and keeps its
  traceback. `--verbosity` lets TensorFlow's log lines through (`console`).
  """

  def _main(argv):
    if flags.FLAGS["verbosity"].present:  # TensorFlow's own log lines back
      console.show_tensorflow_logs()
    try:
      return main(argv)
    except BrokenPipeError:
      # The reader went away: nothing is wrong. Python would complain again when
      # it flushes stdout at exit, so stdout goes to /dev/null first.
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      sys.exit(0)
    except errors.JsiaError as e:
      message = str(e)
    except OSError as e:
      where = f"{e.filename}: " if e.filename else ""
      message = f"{where}{errors.cause(e)}"
    # The exception is gone here, and with it the frames of the failed call. What
    # they held is finalised now, while its files are open: TensorFlow's eager
    # all-reduce leaves a thread pool in its frame when a collective fails, and
    # finalised in the interpreter's teardown it writes to a closed pipe and prints
    # a traceback after the error line.
    gc.collect()
    _fail(message)

  app.run(_main)


def _fail(message: str) -> None:
  logging.flush()
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)
