"""The README's two opening commands are the project's contract with users and CI; the README
stays short, and the documentation's links, commands and departure numbers stay true."""

import configparser
import pathlib
import re
import unicodedata

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCHMARKS = ROOT / "BENCHMARKS.md"
MAX_README_LINES = 150
# Markdown files whose relative links must resolve.
LINKED_DOCS = [README, BENCHMARKS, *sorted((ROOT / "docs").glob("*.md"))]
# Code comments cite "docs/method.md departure N": every number must keep its heading.
NUM_DEPARTURES = 21


def _readme_commands() -> list[str]:
    text = README.read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.DOTALL)
    assert first_block, "README.md must open with a code block holding the two commands"
    lines = [l for l in first_block.group(1).splitlines() if l.strip() and not l.startswith("#")]
    return lines


def _console_scripts() -> dict[str, str]:
    """Console script name -> module, from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = {}
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        name, target = (part.strip() for part in line.split("=", 1))
        scripts[name] = target.split(":")[0]
    return scripts


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = "".join(c for c in text
                   if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(path: pathlib.Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _without_code_blocks(path.read_text()),
                          flags=re.MULTILINE)
    return {_anchor(h) for h in headings}


def _relative_links(path: pathlib.Path) -> list[str]:
    text = _without_code_blocks(path.read_text())
    links = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    return [l for l in links if not re.match(r"^[a-z][a-z0-9+.-]*:", l, flags=re.IGNORECASE)]


def test_readme_opens_with_demo_and_test_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert commands[0].rstrip().endswith("conceptmask-demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail to docs/")


def test_every_console_script_named_in_readme_is_declared():
    scripts = _console_scripts()
    named = {m.rstrip("-") for m in re.findall(r"\bconceptmask-[a-z][a-z-]*", README.read_text())}
    assert named <= set(scripts), sorted(named - set(scripts))


def test_every_declared_console_script_has_its_module():
    for script, module in _console_scripts().items():
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), (script, module)


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for link in _relative_links(doc):
        target, _, fragment = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists() or fragment and path.suffix == ".md" and fragment.lower() not in _anchors(path):
            broken.append(link)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"


def test_method_keeps_every_numbered_departure():
    text = (ROOT / "docs" / "method.md").read_text()
    numbers = [int(n) for n in re.findall(r"^#{2,4} Departure (\d+):", text, flags=re.MULTILINE)]
    assert numbers == list(range(1, NUM_DEPARTURES + 1)), numbers


def test_benchmarks_names_no_issue_numbers():
    text = BENCHMARKS.read_text()
    found = re.findall(r"\bissues?\s*#?\s*\d+|(?<![\w&/#])#\d+\b", text, flags=re.IGNORECASE)
    assert not found, found


def test_every_benchmark_script_in_benchmarks_md_exists():
    names = set(re.findall(r"\bbenchmarks/[\w./-]+?\.py\b", BENCHMARKS.read_text()))
    assert names, "BENCHMARKS.md names no benchmarks/*.py script"
    missing = sorted(n for n in names if not (ROOT / n).exists())
    assert not missing, missing


def test_every_flagfile_in_benchmarks_md_exists():
    names = set(re.findall(r"\bflags/\w+\.cfg\b", BENCHMARKS.read_text()))
    missing = sorted(n for n in names if not (ROOT / n).exists())
    assert not missing, missing


def test_every_console_script_in_benchmarks_md_is_declared():
    named = {m.rstrip("-") for m in re.findall(r"\bconceptmask-[a-z][a-z-]*", BENCHMARKS.read_text())}
    assert named <= set(_console_scripts()), sorted(named - set(_console_scripts()))
