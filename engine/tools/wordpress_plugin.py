"""The WordPress plugin (assets/wordpress/image-studio) as the zip a site owner installs (Plugins → Add New →
Upload Plugin)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from engine.errors import NotFound

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "assets" / "wordpress" / "image-studio"
ZIP_NAME = "image-studio-wordpress.zip"
# A fixed time for every entry: the same sources give the same zip, byte for byte.
_EPOCH = (2026, 1, 1, 0, 0, 0)


def plugin_files(root: Path = PLUGIN_DIR) -> list[Path]:
    if not (root / "image-studio.php").is_file():
        raise NotFound(f"the WordPress plugin's sources are not here ({root}); run from a checkout of Image Studio")
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                         p.relative_to(root).parts))


def build_zip(root: Path = PLUGIN_DIR) -> bytes:
    """Every file under ``image-studio/``, as WordPress expects a plugin zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files(root):
            entry = zipfile.ZipInfo(f"image-studio/{path.relative_to(root).as_posix()}", date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    return buffer.getvalue()
