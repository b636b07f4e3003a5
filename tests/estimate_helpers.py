"""The estimator tests' way of calling the command line: JSON on success, one line on error."""

import json

import pytest

from gpubench.cli import main


def run_json(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(list(args) + ["--json"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0, err
    return json.loads(out)


def run_error(capsys, *args):
    """The error line of a command that must fail with exit 2, one line, no traceback."""
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    lines = [l for l in err.splitlines() if l.strip()]
    assert exc.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
