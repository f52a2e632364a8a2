"""Running the `bastion` command in process, as the CLI tests do: its exit status and what it printed."""

from __future__ import annotations

from bastion.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
