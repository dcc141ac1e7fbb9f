"""The model registry of one index folder: versions, their records, the served pointer, the frozen split.

```
INDEX/models/
  registry.json       {"served": "v2", "history": [{"version", "action", "at"}...]}
  split.json          {product id: "train" | "val" | "test"}: the split every version keeps (grows only)
  switch.json         present only while a switch is under way (search/../registry/swap.py)
  v1/
    version.json      the record: parent, status, checkpoint hash, config, catalog fingerprint,
                      training summary, evaluation against the model it would replace, fusion
    run/              the run's release files (model.pt, config.json, run.json, split.json)
    vectors/          the version's "joint" vectors (a saved vector backend) + photos.json
```
Every metadata file is written atomically (temp file, fsync, rename); a version folder appears
complete or not at all (built aside, then renamed).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prodsearch.errors import ConfigError
from prodsearch.paths import atomic_write_text

log = logging.getLogger(__name__)

MODELS = "models"
STATE = "registry.json"
SPLIT = "split.json"
SWITCH = "switch.json"
RECORD = "version.json"
RUN = "run"
VECTORS = "vectors"
#: Files of a run folder a version keeps (what search loads, and how it was trained).
RUN_FILES = ("model.pt", "config.json", "run.json", "split.json", "calibration.json")
STATUSES = ("candidate", "promoted", "rejected", "rolled-back", "retired")
_VERSION = re.compile(r"^v(\d+)$")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Version:
    """One registered model. ``status``: candidate (trained, not served yet), promoted (served now
    or earlier), rejected (lost its evaluation), rolled-back (served, then switched away from by a
    rollback), retired (replaced by a promotion)."""

    version: str
    status: str
    checkpoint: str  # content hash of run/model.pt (the encoder spec's "checkpoint")
    parent: str | None = None
    created_at: str = field(default_factory=now)
    source_run: str | None = None
    catalog_fingerprint: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None
    fusion: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Version:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Registry:
    """The ``models/`` folder of the index at ``index_root``."""

    def __init__(self, index_root: str | Path):
        self.index_root = Path(index_root)
        self.root = self.index_root / MODELS

    # ------------------------------------------------------------------ paths
    def exists(self) -> bool:
        return (self.root / STATE).is_file()

    def dir(self, version: str) -> Path:
        return self.root / version

    def run_dir(self, version: str) -> Path:
        return self.root / version / RUN

    def vectors_dir(self, version: str) -> Path:
        return self.root / version / VECTORS

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        path = self.root / STATE
        if not path.is_file():
            return {"format": 1, "served": None, "history": []}
        return _read_json(path)

    def _save_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.root / STATE, json.dumps(state, indent=2))

    @property
    def served(self) -> str | None:
        return self.state().get("served")

    def mark_served(self, version: str, action: str) -> None:
        """Record that the index now serves ``version`` (called by the switch, after the index's files)."""
        state = self.state()
        previous = state.get("served")
        state["served"] = version
        state["history"].append({"version": version, "action": action, "from": previous, "at": now()})
        self._save_state(state)

    def previous_served(self) -> str | None:
        """The version served before the current one (what ``rollback`` returns to)."""
        hist = self.state().get("history", [])
        served = self.served
        for h in reversed(hist):
            if h["version"] == served and h.get("from"):
                return h["from"]
        return None

    # ------------------------------------------------------------------ versions
    def versions(self) -> list[Version]:
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _VERSION.match(p.name))]
        return [self.get(p.name) for _, p in sorted(found) if (p / RECORD).is_file()]

    def get(self, version: str) -> Version:
        path = self.root / version / RECORD
        if not path.is_file():
            known = [v.version for v in self.versions()] if self.root.is_dir() else []
            raise ConfigError(
                f"model version {version!r} is not registered in {self.root} (known: {known or 'none'})"
            )
        return Version.from_dict(_read_json(path))

    def save(self, rec: Version) -> None:
        atomic_write_text(self.root / rec.version / RECORD, json.dumps(rec.to_dict(), indent=2, default=str))

    def set_status(self, version: str, status: str, note: str = "") -> Version:
        if status not in STATUSES:
            raise ConfigError(f"status {status!r}: expected one of {STATUSES}")
        rec = self.get(version)
        rec.status = status
        rec.events.append({"status": status, "at": now(), **({"note": note} if note else {})})
        self.save(rec)
        return rec

    def next_version(self) -> str:
        nums = (
            [int(m.group(1)) for p in self.root.iterdir() if (m := _VERSION.match(p.name))]
            if self.root.is_dir()
            else []
        )
        return f"v{max(nums, default=0) + 1}"

    def by_checkpoint(self, checkpoint: str) -> str | None:
        return next((v.version for v in self.versions() if v.checkpoint == checkpoint), None)

    def add(
        self, run_dir: str | Path, *, status: str, parent: str | None, training: dict | None = None
    ) -> Version:
        """Register the run at ``run_dir`` as the next version: its release files are copied into
        ``models/vN/run`` (so the registry does not depend on the run folder staying), built aside
        and renamed into place."""
        from prodsearch.training.checkpoint import file_hash
        from prodsearch.training.embedder import checkpoint_path

        run_dir = Path(run_dir)
        ckpt = checkpoint_path(run_dir)
        if not ckpt.is_file():
            raise ConfigError(f"{run_dir} holds no trained model (no model.pt / best.pt): not a finished run")
        self.root.mkdir(parents=True, exist_ok=True)
        version = self.next_version()
        tmp = self.root / f".{version}.tmp-{os.getpid()}-{time.time_ns()}"
        (tmp / RUN).mkdir(parents=True)
        try:
            for name in RUN_FILES:
                src = run_dir / name
                if name == "model.pt":
                    src = ckpt
                if src.is_file():
                    shutil.copy2(src, tmp / RUN / name)
            summary = _read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
            config = _read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
            rec = Version(
                version=version,
                status=status,
                checkpoint=file_hash(tmp / RUN / "model.pt"),
                parent=parent,
                source_run=str(run_dir.resolve()),
                catalog_fingerprint=summary.get("catalog_fingerprint"),
                config=config,
                training={**(summary.get("result") or {}), **(training or {})},
                events=[{"status": status, "at": now()}],
            )
            atomic_write_text(tmp / RECORD, json.dumps(rec.to_dict(), indent=2, default=str))
            os.rename(tmp, self.root / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if not self.exists():
            self._save_state(self.state())
        return rec

    # ------------------------------------------------------------------ the frozen split
    def frozen_split(self) -> dict[str, str]:
        path = self.root / SPLIT
        return _read_json(path) if path.is_file() else {}

    def freeze_split(self, assignments: dict[str, list[str]]) -> int:
        """Add products' sides (``{"train": [ids], ...}``, e.g. a run's split.json) to the frozen split;
        a product already frozen keeps its side. Returns how many products were added."""
        frozen = self.frozen_split()
        added = 0
        for side in ("test", "val", "train"):
            for pid in assignments.get(side, []):
                if pid not in frozen:
                    frozen[pid] = side
                    added += 1
        if added or not (self.root / SPLIT).is_file():
            atomic_write_text(self.root / SPLIT, json.dumps(frozen, sort_keys=True))
        return added


@functools.lru_cache(maxsize=256)  # asked on every search: resolve each path pair once
def version_of(index_root: str | Path, model_run: str | None) -> str | None:
    """The registered version an index's manifest serves (its ``model_run`` is ``models/vN/run``),
    ``"unregistered"`` for a trained model outside the registry, ``None`` for an untuned index."""
    if not model_run:
        return None
    run = Path(model_run)
    if run.name == RUN and run.parent.parent.name == MODELS and _VERSION.match(run.parent.name):
        try:
            if run.parent.parent.resolve() == (Path(index_root) / MODELS).resolve():
                return run.parent.name
        except OSError:
            pass
    return "unregistered"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: unreadable registry file ({err})") from err
