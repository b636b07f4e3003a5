"""No lost files: what gpubench writes never replaces an input, replaces an existing
file only with --force, is written whole or not at all, and is as readable as a
file ``open()`` would make.

The result files are built in code (noise_helpers); the commands run in-process.
"""

import json
import os
import stat

import pandas as pd
import pytest

from gpubench.results import ResultWriter

from cli_helpers import invoke, one_line_error
from noise_helpers import membw, run, samples

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """Two result files in the working directory, and their bytes."""
    monkeypatch.chdir(tmp_path)
    for name, scale in (("a.json", 1), ("b.json", 2)):
        r = run([membw(s << 20, samples(1e-3 * scale * s, 0.01, seed=s)) for s in (1, 4)])
        (tmp_path / name).write_text(json.dumps(r.to_dict()))
    return {name: (tmp_path / name).read_bytes() for name in ("a.json", "b.json")}


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_compare_never_writes_over_an_input(inputs, tmp_path, capsys):
    """Guards: `compare a.json b.json --csv a.json` replacing a measurement with a table,
    however the input is spelled (a path, ./path, a symlink, a hard link), --force or not."""
    os.symlink("a.json", "link.json")
    os.link("b.json", "hard.json")
    for flag in ("--csv", "--plot"):
        for target, name in (("a.json", "a.json"), ("./b.json", "b.json"), ("link.json", "a.json"),
                             ("hard.json", "b.json")):
            for force in ((), ("--force",)):
                code, _, err = invoke(capsys, "compare", "a.json", "b.json", "link.json", "hard.json",
                                      flag, target, *force)
                one_line_error(code, err, f"{flag} ", "is one of the inputs", "never writes over an input")
                assert (tmp_path / name).read_bytes() == inputs[name]
    assert os.path.islink("link.json") and leftovers(tmp_path) == []


def test_existing_outputs_need_force(inputs, tmp_path, capsys):
    """Guards: --csv README.md / --plot old.png silently replacing a file; and the one
    line naming it and --force, for compare and for run --out."""
    readme, png = tmp_path / "README.md", tmp_path / "old.png"
    readme.write_text("# my notes\n")
    png.write_bytes(b"not yours to replace")
    for flag, path in (("--csv", readme), ("--plot", png)):
        before = path.read_bytes()
        code, out, err = invoke(capsys, "compare", "a.json", "b.json", flag, path.name)
        one_line_error(code, err, f"{flag} {path.name} already exists; --force overwrites it")
        assert path.read_bytes() == before and out == ""       # refused before anything is printed
    code, _, err = invoke(capsys, "compare", "a.json", "b.json", "--csv", "README.md", "--plot", "old.png",
                          "--force")
    assert code == 0, err
    assert list(pd.read_csv(readme).columns[:2]) == ["case_id", "benchmark"]
    assert png.read_bytes().startswith(PNG)
    code, _, err = invoke(capsys, "run", "--device", "cpu", "--out", "README.md")
    one_line_error(code, err, "--out README.md already exists; --force overwrites it")


def test_csv_and_plot_must_differ(inputs, tmp_path, capsys):
    """Guards: --csv x --plot x, where the plot would replace the CSV just written."""
    code, _, err = invoke(capsys, "compare", "a.json", "b.json", "--csv", "out.png", "--plot", "./out.png")
    one_line_error(code, err, "--csv out.png and --plot out.png are the same file")
    assert not (tmp_path / "out.png").exists()


def test_a_crash_mid_write_leaves_the_old_file(inputs, tmp_path, capsys, monkeypatch):
    """Guards: an interrupted write (here the serializer raising halfway, after some
    bytes) truncating the file it replaces; no temporary file is left behind either."""
    from matplotlib.figure import Figure

    old_csv, old_png = b"case_id,old\n1,2\n", PNG + b"old picture"
    (tmp_path / "c.csv").write_bytes(old_csv)
    (tmp_path / "c.png").write_bytes(old_png)

    def half(data):
        def write(self, target, *args, **kwargs):
            if isinstance(target, (str, os.PathLike)):
                with open(target, "wb") as f:
                    f.write(data)
            else:
                target.write(data)
            raise RuntimeError("killed halfway")
        return write

    monkeypatch.setattr(pd.DataFrame, "to_csv", half(b"case_id,benchm"))
    with pytest.raises(RuntimeError, match="killed halfway"):
        invoke(capsys, "compare", "a.json", "b.json", "--csv", "c.csv", "--force")
    assert (tmp_path / "c.csv").read_bytes() == old_csv
    monkeypatch.setattr(Figure, "savefig", half(PNG[:4]))
    with pytest.raises(RuntimeError, match="killed halfway"):
        invoke(capsys, "compare", "a.json", "b.json", "--plot", "c.png", "--force")
    assert (tmp_path / "c.png").read_bytes() == old_png
    assert leftovers(tmp_path) == []


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_get_the_mode_open_would_give(inputs, tmp_path, capsys):
    """Guards: result files created 0600 (mkstemp's mode), unreadable to colleagues.
    A new file gets 0666 & ~umask; a file written over keeps its mode."""
    old = os.umask(0o022)
    try:
        for umask, want in ((0o022, 0o644), (0o077, 0o600)):
            os.umask(umask)
            d = tmp_path / f"umask{umask:o}"
            d.mkdir()
            writer = ResultWriter(d / "r.json", run([]))
            writer.add(membw(1 << 20, samples(1e-3, 0.01)))
            writer.close()
            code, _, err = invoke(capsys, "compare", "a.json", "b.json", "--csv", d / "c.csv", "--plot", d / "c.png")
            assert code == 0, err
            assert {p.name: mode(p) for p in d.iterdir()} == {"r.json": want, "c.csv": want, "c.png": want}
        os.umask(0o077)
        kept = tmp_path / "kept"
        kept.mkdir()
        for name in ("r.json", "c.csv"):
            (kept / name).write_text("")
            os.chmod(kept / name, 0o640)
        ResultWriter(kept / "r.json", run([])).close()
        code, _, err = invoke(capsys, "compare", "a.json", "b.json", "--csv", kept / "c.csv", "--force")
        assert code == 0, err
        assert mode(kept / "r.json") == mode(kept / "c.csv") == 0o640
    finally:
        os.umask(old)
