"""Running the command line in-process in tests."""

from __future__ import annotations


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``prodsearch ARGV`` in this process: ``(exit code, stdout, stderr)``."""
    from prodsearch.cli import main

    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
