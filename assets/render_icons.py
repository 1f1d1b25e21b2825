"""Renders icon.svg to icons/<size>.png (run after changing the SVG: ``python -m assets.render_icons``).

Qt's SVG renderer (PyQt6, from the ``desktop`` extra) draws it; Pillow stores each size as small as it goes."""

import io
import os

from assets import ICON_SIZES, ICON_SVG, icon_png


def main() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PyQt6.QtCore import QBuffer, QIODevice
    from PyQt6.QtGui import QGuiApplication, QImage, QPainter
    from PyQt6.QtSvg import QSvgRenderer

    _app = QGuiApplication([])
    renderer = QSvgRenderer(str(ICON_SVG))
    for size in ICON_SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(0)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        with Image.open(io.BytesIO(bytes(buffer.data()))) as png:
            png.save(icon_png(size), optimize=True)
        print(icon_png(size), icon_png(size).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
