"""README.md and docs/ stay true to the tree: every relative link and image
resolves (and its #anchor names a heading), and every command line that runs one of
the project's entry points names an entry point that exists, with flags it defines.

Flags are read from each entry point's own definitions (`--helpxml`, which parses the
command line and exits before `main`): nothing is run.
"""

import concurrent.futures
import os
import pathlib
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
ENTRY = re.compile(r"^python3? (-m (jsia_tf(?:\.\w+)+)|((?:tools|benchmarks)/\w+\.py))$")
# What ends one command on a line: a shell operator or a comment.
SHELL_END = {"&&", "||", ";", "|", ">", ">>", "2>", "#"}


def _slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces -> '-'."""
  text = re.sub(r"[`*]", "", heading.strip().lower())
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def _anchors(path: pathlib.Path):
  text = FENCE.sub("", path.read_text(encoding="utf-8"))
  return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _links():
  for doc in DOCS:
    text = FENCE.sub("", doc.read_text(encoding="utf-8"))
    for target in LINK.findall(text):
      if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
        continue
      yield doc, target


def test_every_relative_link_and_image_resolves():
  bad = []
  for doc, target in _links():
    path, _, anchor = target.partition("#")
    resolved = (doc.parent / path).resolve() if path else doc
    if not resolved.exists():
      bad.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
    elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
      bad.append(f"{doc.relative_to(ROOT)}: {target} (no heading #{anchor})")
  assert not bad, "\n".join(bad)


def _command_lines(text: str):
  """Every command line in code blocks and inline code: continuation lines joined."""
  for block in FENCE.findall(text):
    yield from block.replace("\\\n", " ").splitlines()
  for span in INLINE.findall(FENCE.sub("", text)):
    yield span.replace("\n", " ")


def _commands():
  """(doc, entry point, flag names) of every command that runs an entry point."""
  found = []
  for doc in DOCS:
    for line in _command_lines(doc.read_text(encoding="utf-8")):
      try:
        words = shlex.split(line, comments=False)
      except ValueError:
        continue
      for start in [i for i, w in enumerate(words) if w in ("python", "python3")]:
        if start + 1 >= len(words):
          continue
        entry = words[start + 1]
        if entry == "-m" and start + 2 < len(words):
          entry = f"-m {words[start + 2]}"
          rest = words[start + 3:]
        else:
          rest = words[start + 2:]
        if not ENTRY.match(f"python {entry}"):
          continue
        flag_names = []
        for word in rest:
          if word in SHELL_END or word.startswith("#"):
            break
          word = word.strip("[]")
          if word.startswith("--") and len(word) > 2:
            flag_names.append(word[2:].split("=", 1)[0])
        found.append((doc.relative_to(ROOT), entry, flag_names))
  return found


def _entry_file(entry: str) -> pathlib.Path:
  if entry.startswith("-m "):
    return ROOT / (entry[3:].replace(".", "/") + ".py")
  return ROOT / entry


def _defined_flags(entry: str):
  """The flags an entry point defines, as absl reports them (`--helpxml`)."""
  argv = entry.split() if entry.startswith("-m ") else [str(ROOT / entry)]
  out = subprocess.run([sys.executable, *argv, "--helpxml"], cwd=ROOT, text=True,
                       capture_output=True, timeout=300,
                       env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}).stdout
  root = ET.fromstring(out)
  flags = {}
  for flag in root.iter("flag"):
    flags[flag.findtext("name")] = flag.findtext("type")
  return flags


def test_the_docs_name_commands():
  """The checker itself sees the commands the docs are about."""
  entries = {entry for _, entry, _ in _commands()}
  for expected in ("-m jsia_tf.train", "-m jsia_tf.evaluate", "-m jsia_tf.export",
                   "tools/check_parity.py", "benchmarks/train_step.py"):
    assert expected in entries


def test_every_command_names_an_entry_point_and_its_flags():
  commands = _commands()
  missing = sorted({f"{doc}: python {entry}" for doc, entry, _ in commands
                    if not _entry_file(entry).is_file()})
  assert not missing, "no such entry point:\n" + "\n".join(missing)
  entries = sorted({entry for _, entry, _ in commands})
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    defined = dict(zip(entries, pool.map(_defined_flags, entries)))
  bad = []
  for doc, entry, names in commands:
    flags = defined[entry]
    for name in names:
      negated_bool = name.startswith("no") and flags.get(name[2:]) == "bool"
      if name not in flags and not negated_bool:
        bad.append(f"{doc}: python {entry} --{name}")
  assert not bad, "flags the entry point does not define:\n" + "\n".join(sorted(set(bad)))


def test_ci_runs_the_readme_test_command():
  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  first_block = FENCE.search(readme).group(1).splitlines()
  test_command = [line for line in first_block if "pytest" in line]
  assert len(test_command) == 1, first_block
  pytest_part = test_command[0].split("&& ")[-1]
  ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
  assert pytest_part in ci


MADE = re.compile(r".{0,60}\b(sessions? \d+|issues? \d+).{0,60}", re.I)
SOURCES = DOCS + sorted(p for d in ("jsia_tf", "flags", "tools", "benchmarks", "tests")
                        for p in (ROOT / d).rglob("*.py"))


def test_no_words_about_how_the_project_is_made():
  """Docs, code and tests speak of the project as it is: no session or issue
  numbers (its history is in git)."""
  bad = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in SOURCES
         for m in MADE.finditer(p.read_text(encoding="utf-8"))]
  assert not bad, "\n".join(bad)
