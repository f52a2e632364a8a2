"""A server file that cannot be served ends the command in one line naming the file, tool, parameter or module
and the fix, with exit status 2 and no traceback (unless --debug)."""

from __future__ import annotations

import pytest

from bastion.cli.target import load_app

CASES = {
    "plain.py": (
        "class Plain:\n    pass\n\n@app.tool\ndef a(p: Plain) -> str:\n    return ''\n",
        "plain.py: tool 'a': parameter 'p' has type plain.Plain, which cannot be described to clients as JSON Schema",
    ),
    "sock.py": (
        "import socket\n\n@app.tool(name='connect')\ndef c(host: str, sock: socket.socket) -> str:\n    return ''\n",
        "sock.py: tool 'connect': parameter 'sock' has type socket.socket",
    ),
    "call.py": (
        "from typing import Callable\n\n@app.tool\ndef a(f: Callable[[int], int]) -> str:\n    return ''\n",
        "call.py: tool 'a': parameter 'f' has type Callable[[int], int]",
    ),
    "ret.py": (
        "import socket\n\n@app.tool\ndef a() -> socket.socket:\n    return None\n",
        "ret.py: tool 'a': its return type socket.socket cannot be described",
    ),
    "unknown.py": (
        "@app.tool\ndef a(x: 'Missing') -> str:\n    return ''\n",
        "unknown.py: tool 'a': name 'Missing' is not defined in its annotations; import it",
    ),
    "missing.py": (
        "import not_installed_anywhere\n",
        "missing.py imports 'not_installed_anywhere', which is not installed",
    ),
    "boom.py": ("settings = {}['nope']\n", "boom.py failed to load: KeyError: 'nope' at "),
    "syntax.py": ("def f(:\n", "syntax.py:3: invalid syntax"),
}
HEADER = "from bastion import App\napp = App('t')\n"


@pytest.mark.parametrize("name", list(CASES))
def test_a_server_file_that_cannot_load_is_one_line(tmp_path, capsys, name):
    source, expected = CASES[name]
    path = tmp_path / name
    path.write_text(HEADER + source)
    with pytest.raises(SystemExit) as stopped:
        load_app(str(path))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bastion: ") and expected in err, err
    assert "Traceback" not in err
    if name in ("plain.py", "sock.py", "call.py", "ret.py"):
        assert "use str, int, float, bool, a list or dict of them" in err


def test_debug_shows_the_traceback_as_well(tmp_path, capsys):
    path = tmp_path / "boom2.py"
    path.write_text(HEADER + "settings = {}['nope']\n")
    with pytest.raises(SystemExit):
        load_app(str(path), debug=True)
    err = capsys.readouterr().err
    last = err.rstrip().splitlines()[-1]
    assert "Traceback" in err and last.startswith("bastion: ") and "boom2.py failed to load" in last


def test_no_app_or_no_file(tmp_path, capsys):
    (tmp_path / "empty.py").write_text("x = 1\n")
    for target in (str(tmp_path / "empty.py"), str(tmp_path / "absent.py"), "no_such_module_here:app"):
        with pytest.raises(SystemExit) as stopped:
            load_app(target)
        assert stopped.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("defines no bastion App (name it `app` or pass file.py:name)")
    assert lines[1].startswith("bastion: no such file: ")
    assert lines[2] == (
        "bastion: no module named 'no_such_module_here': pass a file (server.py) or an importable module (pkg.mod:app)"
    )
