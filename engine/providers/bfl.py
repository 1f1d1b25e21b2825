"""Black Forest Labs' API (https://docs.bfl.ai): FLUX.2 [pro] and the FLUX models it serves.

Submit ``POST {base}/v1/{model}`` with the ``x-key`` header; the answer has the task's ``id`` and a
``polling_url`` (which may be on a regional host: it is used as given, on BFL's own hosts only). Poll it until
``status`` is ``Ready`` (the image is at ``result.sample``, a signed URL good for minutes, downloaded at once),
or a moderation or error status. The API has no cancel: a cancelled job stops polling and is not charged here.
"""

from __future__ import annotations

import time

import httpx

from engine.errors import ContentModerated, EngineError, ProviderOutOfCredit, ProviderUnavailable
from engine.generation.params import ResolvedParams
from engine.providers.base import Provider, StopCheck

MODERATED = ("Request Moderated", "Content Moderated")
FAILED = ("Error", "Failed", "Task not found")


class BflProvider(Provider):
    name = "bfl"
    label = "BFL API"

    def headers(self) -> dict[str, str]:
        return {"x-key": self.config.api_key, "accept": "application/json"}

    def generate(self, model: str, params: ResolvedParams, should_stop: StopCheck) -> bytes:
        body = {"prompt": params.prompt, "width": params.width, "height": params.height, "seed": params.seed,
                "output_format": "png", "safety_tolerance": 2}
        deadline = time.monotonic() + self.config.timeout_s
        submitted = self.json(self.request("POST", f"/v1/{model}", json=body))
        task_id = str(submitted.get("id") or "")
        polling_url = submitted.get("polling_url") or f"{self.base}/v1/get_result?id={task_id}"
        if not task_id:
            raise ProviderUnavailable(f"{self.label} accepted the request but gave no task id")
        while True:
            polled = self.json(self.request("GET", polling_url))
            status = polled.get("status")
            if status == "Ready":
                result = polled.get("result") or {}
                if not isinstance(result.get("sample"), str):
                    raise ProviderUnavailable(f"{self.label} said the image was ready but gave no link to it")
                return self.download(result["sample"])
            if status in MODERATED:
                raise ContentModerated(f"{self.label}'s moderation refused this request ({status.lower()}); "
                                       f"change the prompt", field="prompt")
            if status in FAILED:
                raise ProviderUnavailable(f"{self.label} could not make the image ({status}); try again")
            self.wait(deadline, should_stop)

    def error_for(self, response: httpx.Response) -> EngineError:
        if response.status_code == 402:
            return ProviderOutOfCredit(f"the server's {self.label} account is out of credits; an admin must buy "
                                       f"more at bfl.ai")
        if response.status_code == 429:
            return ProviderUnavailable(f"{self.label} has too many of this server's tasks running; try again "
                                       f"shortly")
        return super().error_for(response)

    def test(self) -> str:
        body = self.json(self.request("GET", "/v1/credits"))
        return f"{self.label} answered: {body.get('credits', '?')} credits left"
