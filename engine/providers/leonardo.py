"""Leonardo.Ai's REST API (https://docs.leonardo.ai): Lucid Origin and Phoenix 1.0.

``POST {base}/generations`` with ``Authorization: Bearer``, the platform model's ``modelId``; the answer's
``sdGenerationJob.generationId`` is polled at ``GET {base}/generations/{id}`` until
``generations_by_pk.status`` is ``COMPLETE`` (the images are ``generated_images[].url`` on Leonardo's CDN) or
``FAILED``. A cancelled job is deleted at Leonardo (``DELETE /generations/{id}``).
"""

from __future__ import annotations

import time

import httpx

from engine.errors import ContentModerated, EngineError, ProviderOutOfCredit, ProviderUnavailable
from engine.generation.params import ResolvedParams
from engine.providers.base import Provider, StopCheck

SEED_LIMIT = 2_147_483_637  # Leonardo's largest seed: larger ones are folded into its range


class LeonardoProvider(Provider):
    name = "leonardo"
    label = "Leonardo.Ai API"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}", "accept": "application/json"}

    def generate(self, model: str, params: ResolvedParams, should_stop: StopCheck) -> bytes:
        body = {"prompt": params.prompt, "modelId": model, "width": params.width, "height": params.height,
                "num_images": 1, "seed": params.seed % SEED_LIMIT, "contrast": 3.5, "alchemy": False,
                "ultra": False}  # alchemy: not on Lucid, and Phoenix's "Quality" mode would change the price
        if params.negative_prompt:
            body["negative_prompt"] = params.negative_prompt
        deadline = time.monotonic() + self.config.timeout_s
        submitted = self.json(self.request("POST", "/generations", json=body))
        job = submitted.get("sdGenerationJob") or {}
        generation_id = job.get("generationId")
        if not generation_id:
            raise ProviderUnavailable(f"{self.label} accepted the request but gave no generation id")

        def cancel() -> None:
            self.request("DELETE", f"/generations/{generation_id}")

        while True:
            polled = self.json(self.request("GET", f"/generations/{generation_id}"))
            generation = polled.get("generations_by_pk") or {}
            status = generation.get("status")
            if status == "COMPLETE":
                images = generation.get("generated_images") or []
                if not images or not isinstance(images[0].get("url"), str):
                    raise ProviderUnavailable(f"{self.label} finished without an image")
                if images[0].get("nsfw") is True:
                    raise ContentModerated(f"{self.label} flagged the image as not safe for work", field="prompt")
                return self.download(images[0]["url"])
            if status == "FAILED":
                raise ProviderUnavailable(f"{self.label} could not make the image; try again")
            self.wait(deadline, should_stop, cancel=cancel)

    def error_for(self, response: httpx.Response) -> EngineError:
        detail = self.detail(response).lower()
        if response.status_code == 402 or any(words in detail for words in ("enough api tokens", "not enough",
                                                                              "insufficient")):
            return ProviderOutOfCredit(f"the server's {self.label} account is out of API credits; an admin must "
                                       f"top it up at leonardo.ai")
        if "moderat" in detail or "nsfw" in detail:
            return ContentModerated(f"{self.label}'s moderation refused this prompt", field="prompt")
        return super().error_for(response)

    def test(self) -> str:
        body = self.json(self.request("GET", "/me"))
        details = (body.get("user_details") or [{}])[0]
        tokens = details.get("apiSubscriptionTokens", details.get("apiPaidTokens", "?"))
        return f"{self.label} answered: {tokens} API credits left"
