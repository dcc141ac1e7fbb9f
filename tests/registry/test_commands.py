"""``prodsearch refresh`` and ``prodsearch models list|show|promote|rollback``, in-process, on the
toy shop; a catalog whose columns changed stops the refresh before anything is written."""

from __future__ import annotations

import csv
import json

from cli_helpers import run_cli as run


def test_refresh_and_models_commands(make_index, registry_env, capsys):
    _, catalog, _, _ = registry_env
    idx = str(make_index("bad"))
    code, out, _ = run(capsys, "models", "list", idx)
    assert code == 0 and "no registered model versions" in out
    code, out, err = run(capsys, "refresh", idx, "--catalog", str(catalog), "--epochs", "6")
    assert code == 0, err
    assert "sync: added 0, updated 0, deleted 0" in out and "train: candidate v2 (warm start from v1)" in out
    assert (
        "better beyond the noise" in out and "promote: index now serves v2" in out and "/admin/reload" in out
    )
    code, out, _ = run(capsys, "models", "list", idx)
    lines = out.splitlines()
    assert lines[0].startswith("  v1    retired") and lines[1].startswith("* v2    promoted     parent v1")
    assert "vs v1" in lines[1]
    code, out, _ = run(capsys, "models", "show", idx, "v2")
    rec = json.loads(out)
    assert rec["served"] and rec["evaluation"]["better"] and rec["config"]["epochs"] == 6
    code, out, _ = run(capsys, "models", "rollback", idx)
    assert code == 0 and "now serves v1 (was v2; encoded 0 products)" in out
    code, out, _ = run(capsys, "info", idx)
    assert json.loads(out)["model_version"] == "v1"
    code, out, _ = run(capsys, "models", "promote", idx, "v2")  # evaluated against v1, which is served again
    assert code == 0 and "now serves v2 (was v1" in out
    code, _, err = run(capsys, "models", "promote", idx, "v7")
    assert code == 2 and err.startswith("error: model version 'v7' is not registered") and "v1" in err
    code, out, _ = run(capsys, "models", "list", idx, "--json")
    assert json.loads(out)["served"] == "v2"


def test_refresh_stops_before_writing_when_the_catalog_columns_changed(
    make_index, registry_env, tmp_path, capsys
):
    _, catalog, _, _ = registry_env
    idx = make_index("good")
    rows = list(csv.reader(open(catalog, encoding="utf-8")))
    changed = tmp_path / "no-colour.csv"
    with open(changed, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([[c for j, c in enumerate(r) if j != 2] for r in rows])  # drop "colour"
    for r in rows[1:]:  # photos next to the new file
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / r[-1]).write_bytes((catalog.parent / r[-1]).read_bytes())
    files = {p: p.read_bytes() for p in idx.rglob("*") if p.is_file()}
    code, out, err = run(capsys, "refresh", str(idx), "--catalog", str(changed))
    assert code == 2 and "missing column(s)" in err and "colour" in err
    assert {p: p.read_bytes() for p in idx.rglob("*") if p.is_file()} == files
