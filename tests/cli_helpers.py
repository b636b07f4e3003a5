"""Running the gpubench CLI in-process from a test: exit code, stdout, stderr."""

import pytest

from gpubench.cli import main


def invoke(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def one_line_error(code, err, *needles):
    """Bad input ends in exit 2 and one `gpubench: error:` line naming the problem."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gpubench: error: "), err
    for n in needles:
        assert n in lines[0], lines[0]
