"""The README's two opening commands are the project's contract with users and CI."""

import configparser
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.DOTALL)
    assert first_block, "README.md must open with a code block holding the two commands"
    lines = [l for l in first_block.group(1).splitlines() if l.strip() and not l.startswith("#")]
    return lines


def test_readme_opens_with_demo_and_test_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert commands[0].rstrip().endswith("conceptmask-demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_every_console_script_named_in_readme_is_declared():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    declared = {
        line.split("=")[0].strip()
        for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    }
    named = set(re.findall(r"`(conceptmask-[a-z-]+)", (ROOT / "README.md").read_text()))
    assert named <= declared, named - declared
    for script in declared:
        module = cfg["options.entry_points"]["console_scripts"].split(script + " = ")[1].split(":")[0]
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
