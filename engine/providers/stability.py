"""Stability AI's background removal (https://platform.stability.ai/docs/api-reference), instead of local rembg.

``POST {base}/v2beta/stable-image/edit/remove-background``, multipart ``image`` and ``output_format=png``, with
``Authorization: Bearer`` and ``Accept: image/*``: the answer is the cut-out PNG itself. Errors are JSON
``{"id", "name", "errors": [...]}``; ``name`` says what happened (``content_moderation``, …).
"""

from __future__ import annotations

import io

import httpx
from PIL import Image

from engine.errors import ContentModerated, EngineError, InvalidRequest, ProviderOutOfCredit
from engine.providers.base import Provider, StopCheck

MAX_PIXELS = 4_194_304  # Stability's limit for this endpoint (about 2048×2048)


class StabilityProvider(Provider):
    name = "stability"
    label = "Stability AI API"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    def remove_background(self, image: Image.Image, should_stop: StopCheck) -> bytes:
        if not 4096 <= image.width * image.height <= MAX_PIXELS or min(image.size) < 64:
            raise InvalidRequest(f"{self.label} removes backgrounds of images of 64 px a side and up to "
                                 f"{MAX_PIXELS:,} pixels; this one is {image.width}×{image.height}",
                                 field="input_image")
        buffer = io.BytesIO()
        image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(buffer, format="PNG")
        response = self.request("POST", "/v2beta/stable-image/edit/remove-background",
                                headers={"Accept": "image/*"}, data={"output_format": "png"},
                                files={"image": ("image.png", buffer.getvalue(), "image/png")})
        if response.headers.get("finish-reason") == "CONTENT_FILTERED":
            raise ContentModerated(f"{self.label}'s content filter refused this image", field="input_image")
        return response.content

    def error_for(self, response: httpx.Response) -> EngineError:
        try:
            name = str(response.json().get("name", ""))
        except (ValueError, AttributeError):
            name = ""
        if name == "content_moderation":
            return ContentModerated(f"{self.label}'s moderation refused this image", field="input_image")
        if response.status_code == 402 or name in ("payment_required", "insufficient_balance"):
            return ProviderOutOfCredit(f"the server's {self.label} account is out of credits; an admin must buy "
                                       f"more at platform.stability.ai")
        return super().error_for(response)

    def test(self) -> str:
        body = self.json(self.request("GET", "/v1/user/balance", headers={"Accept": "application/json"}))
        return f"{self.label} answered: {body.get('credits', '?')} credits left"
