"""The documentation states what the code does: every run-record field is on docs/run-records.md,
and every experiment and profile the registry knows is in the README."""

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import yaml

from convmixer import records, study

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_every_run_record_field_is_documented():
    page = (ROOT / "docs" / "run-records.md").read_text()
    fields = [f.name for schema in (records.RunRecord, records.Metrics) for f in dataclasses.fields(schema)]
    missing = [name for name in [*fields, *records.HISTORY_COLUMNS] if f"`{name}`" not in page]
    assert not missing, f"docs/run-records.md does not name {missing}"
    assert f"schema version {records.SCHEMA_VERSION}" in page


def test_the_readme_names_every_experiment_and_profile():
    readme = (ROOT / "README.md").read_text()
    for name in [*study.experiment_names(), *study.available("profiles")]:
        assert f"`{name}`" in readme, name


def readme_commands(program: str) -> list[str]:
    """Every `program ...` command of the README: lines of its fenced blocks (continuations
    joined, comments dropped) and inline code spans that hold a whole command."""
    readme = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if program in words:  # also `cd notebooks && papermill ...` and `pip ... && convmixer ...`
                command = words[words.index(program) :]
                commands.append(command[: command.index("&&")] if "&&" in command else command)
    for span in re.findall(r"`([^`\n]+)`", readme):
        words = span.split()
        # A whole command, not a mention such as `convmixer run` or `convmixer list --show PROFILE`.
        if words[0] == program and len(words) >= 3 and not any(w.isupper() for w in words):
            commands.append(shlex.split(span))
    return commands


def test_every_convmixer_command_in_the_readme_is_accepted_as_written():
    """Each parses with the real command line, names real profiles and experiments, and plans."""
    from convmixer import cli

    commands = readme_commands("convmixer")
    assert len(commands) >= 10
    parser = cli.build_parser()
    for command in commands:
        args = parser.parse_args(command[1:])
        if args.command in ("run", "report"):
            names = getattr(args, "only", None) or study.experiment_names()
            trials = [
                t
                for name in names
                for t in study.plan(name, args.profile, allow_empty=names == study.experiment_names())
            ]
            assert trials, command
        if args.command == "list" and args.show:
            assert study.plan_profile(args.show), command


def test_every_papermill_example_in_the_readme_plans_its_trials():
    """The notebooks' parameters as the README passes them give valid trials (the example that
    once asked for p=14 at 63 pixels failed here, before anything trained)."""
    commands = readme_commands("papermill")
    assert len(commands) >= 2
    for command in commands:
        notebook = ROOT / "notebooks" / Path(command[1]).name
        assert notebook.is_file(), command
        parameters = {}
        for flag, *rest in zip(command, command[1:], command[2:]):
            if flag == "-p":
                parameters[rest[0]] = rest[1]
        for flag, text in zip(command, command[1:]):
            if flag == "-y":
                parameters.update(yaml.safe_load(text))
        experiment = notebook.stem
        trials = study.plan(experiment, parameters["profile"], parameters.get("values"), parameters.get("seeds"))
        assert trials, command
