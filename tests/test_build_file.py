"""BUILD stays true to the tree: every module in a py_library or py_binary, every
test file in a py_test, every `if __name__ == "__main__"` module a py_binary, and
every dependency a defined target.

Bazel cannot build offline here, so the Starlark file is run as Python with rule
functions that record their arguments (BUILD uses only that common subset).
"""

import glob
import os
import re

from conftest import REPO

SOURCE_DIRS = ("jsia_tf", "flags", "tools", "benchmarks", "tests")


def _targets():
  targets = []

  def rule(kind):
    def record(**kwargs):
      targets.append(dict(kwargs, kind=kind))
    return record

  namespace = {k: rule(k) for k in ("py_library", "py_binary", "py_test")}
  namespace["package"] = lambda **kwargs: None
  namespace["glob"] = lambda patterns: sorted(
      os.path.relpath(f, REPO) for p in patterns for f in glob.glob(os.path.join(REPO, p)))
  with open(os.path.join(REPO, "BUILD")) as f:
    exec(compile(f.read(), "BUILD", "exec"), namespace)  # pylint: disable=exec-used
  return targets


def _tree():
  files = []
  for d in SOURCE_DIRS:
    files += glob.glob(os.path.join(REPO, d, "**", "*.py"), recursive=True)
  return sorted(os.path.relpath(f, REPO) for f in files)


def test_every_python_file_is_in_a_target():
  covered = {src for t in _targets() for src in t.get("srcs", [])}
  missing = [f for f in _tree() if f not in covered]
  assert not missing, f"BUILD does not list: {missing}"
  stale = sorted(covered - set(_tree()))
  assert not stale, f"BUILD lists files that do not exist: {stale}"


def test_kinds_match_roles():
  targets = _targets()
  tests = {s for t in targets if t["kind"] == "py_test" for s in t["srcs"]}
  assert tests == {f for f in _tree()
                   if os.path.basename(f).startswith("test_")}
  binaries = {s for t in targets if t["kind"] == "py_binary" for s in t["srcs"]}
  for f in _tree():
    with open(os.path.join(REPO, f)) as fh:
      if re.search(r"^if __name__ == .__main__.:", fh.read(), re.M):
        assert f in binaries, f"{f} is an entry point without a py_binary"


def test_deps_are_defined_and_names_unique():
  targets = _targets()
  names = [t["name"] for t in targets]
  assert len(names) == len(set(names))
  for t in targets:
    for dep in t.get("deps", []) + [d for d in t.get("data", []) if d.startswith(":")]:
      assert dep.startswith(":") and dep[1:] in names, (t["name"], dep)
