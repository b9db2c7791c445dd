"""Shared plumbing of the command-line entry points (absl apps)."""

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
  traceback. Anything else is a bug and keeps its traceback. `--verbosity` lets
  TensorFlow's log lines through (`console`).
  """

  def _main(argv):
    if flags.FLAGS["verbosity"].present:  # TensorFlow's own log lines back
      console.show_tensorflow_logs()
    try:
      return main(argv)
    except errors.JsiaError as e:
      logging.flush()
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)

  app.run(_main)
