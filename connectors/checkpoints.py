"""Finding retained checkpoints to resume from (pure; no pyflink)."""

from __future__ import annotations

import re
from pathlib import Path

_CHECKPOINT_DIR = re.compile(r"^chk-(\d+)$")


def completed_checkpoints(checkpoint_root: Path) -> list[Path]:
    """Completed checkpoints (a `chk-N` folder with `_metadata`) under any job id, oldest first."""
    if not checkpoint_root.exists():
        return []
    found = [
        metadata.parent
        for metadata in checkpoint_root.glob("*/chk-*/_metadata")
        if _CHECKPOINT_DIR.match(metadata.parent.name)
    ]
    return sorted(found, key=lambda path: ((path / "_metadata").stat().st_mtime, int(path.name[4:])))


def latest_checkpoint(checkpoint_root: Path) -> Path | None:
    checkpoints = completed_checkpoints(checkpoint_root)
    return checkpoints[-1] if checkpoints else None


def resolve_recovery_path(value: str, checkpoint_root: Path) -> Path | None:
    """`latest` -> newest completed checkpoint under the root; a path -> that path (validated)."""
    if not value:
        return None
    if value == "latest":
        latest = latest_checkpoint(checkpoint_root)
        if latest is None:
            raise FileNotFoundError(f"--from-checkpoint latest: no completed checkpoint under {checkpoint_root}")
        return latest
    path = Path(value.removeprefix("file://"))
    if not (path / "_metadata").exists() and not (path.is_file() and path.name == "_metadata"):
        raise FileNotFoundError(f"--from-checkpoint {value}: no _metadata there")
    return path
