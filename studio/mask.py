"""The mask painter: paint over the picture being edited (brush size, invert, clear); the painted area is what an
inpainting run repaints. Strokes are kept in image pixels and drawn as an SVG overlay; the mask is made from them on
the server (white = repaint), so what is painted is exactly what runs."""

from __future__ import annotations

from nicegui import events, ui
from PIL import Image, ImageDraw, ImageOps

Stroke = tuple[int, list[tuple[float, float]]]  # brush diameter in image pixels, and its points


def mask_from_strokes(size: tuple[int, int], strokes: list[Stroke], invert: bool = False) -> Image.Image:
    """An L image of ``size``: white where painted (round brush), black elsewhere; ``invert`` swaps them."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for width, points in strokes:
        radius = width / 2
        for x, y in points:  # round ends and joins
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
        if len(points) > 1:
            draw.line(points, fill=255, width=max(1, int(width)))
    return ImageOps.invert(mask) if invert else mask


class MaskPainter:
    def __init__(self):
        self.strokes: list[Stroke] = []
        self.size: tuple[int, int] = (0, 0)
        self._drawing = False
        with ui.column().classes("w-full gap-2").mark("mask-painter") as self.box:
            self.canvas = ui.interactive_image(events=["mousedown", "mousemove", "mouseup", "mouseleave"],
                                               on_mouse=self._on_mouse, cross=False) \
                .classes("w-full rounded-lg studio-checker").mark("mask-canvas").props("data-testid=mask-canvas") \
                .props('aria-label="Paint over what to repaint"')
            with ui.row().classes("w-full items-center gap-3 no-wrap"):
                ui.label("Brush").classes("text-sm shrink-0")
                self.brush = ui.slider(min=4, max=160, step=2, value=32).props('label aria-label="Brush size"') \
                    .classes("grow").mark("brush-size")
                self.invert = ui.checkbox("Invert", on_change=lambda: self._draw()).mark("mask-invert") \
                    .tooltip("Repaint everything except what is painted")
                ui.button("Clear", icon="layers_clear", on_click=self.clear).props("flat dense no-caps") \
                    .mark("mask-clear")
            self.hint = ui.label("Paint over what should change; without a mask the whole picture is edited.") \
                .classes("text-xs studio-muted")
        self.box.visible = False

    def show(self, png_url: str, size: tuple[int, int]) -> None:
        self.size = size
        self.strokes = []
        self.canvas.set_source(png_url)
        self.box.visible = True
        self._draw()

    def hide(self) -> None:
        self.strokes = []
        self.box.visible = False

    def clear(self) -> None:
        self.strokes = []
        self._draw()

    def mask(self) -> Image.Image | None:
        """The painted mask (white = repaint), or None when nothing is painted."""
        if not self.strokes or not self.box.visible:
            return None
        return mask_from_strokes(self.size, self.strokes, bool(self.invert.value))

    def paint(self, points: list[tuple[float, float]], width: int | None = None) -> None:
        """One stroke through ``points`` (image pixels): what the mouse does, and what tests do."""
        self.strokes.append((int(width or self.brush.value), [(float(x), float(y)) for x, y in points]))
        self._draw()

    def _on_mouse(self, event: events.MouseEventArguments) -> None:
        if event.type == "mousedown":
            self._drawing = True
            self.paint([(event.image_x, event.image_y)])
        elif event.type == "mousemove" and self._drawing and self.strokes:
            self.strokes[-1][1].append((event.image_x, event.image_y))
            self._draw()
        elif event.type in ("mouseup", "mouseleave"):
            self._drawing = False

    def _draw(self) -> None:
        """The strokes as SVG over the picture (in image pixels, so they scale with it); inverted, the unpainted
        area is tinted instead."""
        shapes = []
        for width, points in self.strokes:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            if len(points) == 1:
                x, y = points[0]
                shapes.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{width / 2:.1f}" />')
            else:
                shapes.append(f'<polyline points="{path}" fill="none" stroke-width="{width}" '
                              'stroke-linecap="round" stroke-linejoin="round" />')
        paint = "".join(shapes)
        if self.invert.value and paint:
            w, h = self.size
            content = (f'<defs><mask id="m"><rect width="{w}" height="{h}" fill="white" />'
                       f'<g fill="black" stroke="black">{paint}</g></mask></defs>'
                       f'<rect width="{w}" height="{h}" fill="#ec4899" fill-opacity="0.45" mask="url(#m)" />')
        else:
            content = f'<g fill="#ec4899" stroke="#ec4899" fill-opacity="0.45" stroke-opacity="0.45">{paint}</g>'
        self.canvas.content = content
        self.hint.text = (f"{len(self.strokes)} stroke{'s' if len(self.strokes) != 1 else ''} painted: "
                          + ("everything else is repainted." if self.invert.value else "that area is repainted.")
                          if self.strokes else
                          "Paint over what should change; without a mask the whole picture is edited.")
