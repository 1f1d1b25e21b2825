"""Local stand-ins for the vendors' APIs, on loopback, following each vendor's documented request and response
shapes (docs.bfl.ai, docs.leonardo.ai, platform.stability.ai): what the adapters are tested against. Each keeps
the calls it got and has a ``mode`` that makes it misbehave the way the real ones can."""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image


def png_of(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (200, 80, 40, 255)[: len(mode)]).save(buffer, format="PNG")
    return buffer.getvalue()


class StandIn:
    """One vendor on a free loopback port. ``mode``: ok, no_credit, invalid, moderated, failed, pending (never
    finishes), not_image, foreign_poll (a polling URL on another host), down (HTTP 500)."""

    key = ""

    def __init__(self):
        self.mode = "ok"
        self.polls_before_ready = 2
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[dict] = []
        self.tasks: dict[str, dict] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                stand_in.handle(self, "GET")

            def do_POST(self):
                stand_in.handle(self, "POST")

            def do_DELETE(self):
                stand_in.handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def send(handler, status: int, body, content_type: str = "application/json", headers: dict | None = None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def read(handler) -> bytes:
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    def handle(self, handler, method: str):
        path = urlsplit(handler.path).path
        self.calls.append((method, path))
        if self.mode == "down":
            self.send(handler, 500, {"detail": "Internal Server Error"})
            return
        self.route(handler, method, path)

    def route(self, handler, method: str, path: str):
        raise NotImplementedError


class BflStandIn(StandIn):
    """api.bfl.ai: POST /v1/{model} (x-key) → {id, polling_url}; GET polling_url → {status, result.sample}."""

    key = "bfl-test-key"

    def route(self, handler, method, path):
        if path.startswith("/delivery/"):  # the signed result URL: no key needed, as at delivery-*.bfl.ai
            task = self.tasks[path.rsplit("/", 1)[1].removesuffix(".png")]
            if self.mode == "not_image":
                self.send(handler, 200, b"<html>AccessDenied</html>", "text/html")
            else:
                self.send(handler, 200, png_of(task["width"], task["height"]), "image/png")
            return
        if handler.headers.get("x-key") != self.key:
            self.send(handler, 403, {"detail": "Not authenticated - Invalid Authentication"})
            return
        if method == "GET" and path == "/v1/credits":
            self.send(handler, 200, {"credits": 1234.5})
        elif method == "POST" and path.startswith("/v1/"):
            body = json.loads(self.read(handler))
            self.bodies.append(body)
            if self.mode == "no_credit":
                self.send(handler, 402, {"detail": "Insufficient credits"})
            elif self.mode == "invalid":
                self.send(handler, 422, {"detail": [{"loc": ["body", "width"], "msg": "must be a multiple of 16",
                                                     "type": "value_error"}]})
            else:
                task_id = secrets.token_hex(8)
                self.tasks[task_id] = {"polls": 0, "width": body["width"], "height": body["height"],
                                       "seed": body.get("seed")}
                host = f"http://localhost:{self.server.server_port}" if self.mode == "foreign_poll" else self.base
                self.send(handler, 200, {"id": task_id, "polling_url": f"{host}/v1/get_result?id={task_id}",
                                         "cost": 3.0, "input_mp": 0, "output_mp": 0.26})
        elif method == "GET" and path == "/v1/get_result":
            task_id = parse_qs(urlsplit(handler.path).query)["id"][0]
            task = self.tasks.get(task_id)
            if task is None:
                self.send(handler, 200, {"id": task_id, "status": "Task not found"})
                return
            task["polls"] += 1
            if self.mode == "pending" or task["polls"] <= self.polls_before_ready:
                self.send(handler, 200, {"id": task_id, "status": "Pending", "result": None, "progress": 0.5})
            elif self.mode == "moderated":
                self.send(handler, 200, {"id": task_id, "status": "Content Moderated", "result": None,
                                         "details": {"Moderation Reasons": ["Derivative Works Filter"]}})
            elif self.mode == "failed":
                self.send(handler, 200, {"id": task_id, "status": "Error", "result": None})
            else:
                self.send(handler, 200, {"id": task_id, "status": "Ready", "result": {
                    "sample": f"{self.base}/delivery/{task_id}.png", "prompt": "…", "seed": task["seed"],
                    "start_time": 1, "end_time": 2, "duration": 1}})
        else:
            self.send(handler, 404, {"detail": "Not Found"})


class LeonardoStandIn(StandIn):
    """cloud.leonardo.ai/api/rest/v1: POST /generations → sdGenerationJob.generationId; GET /generations/{id}
    → generations_by_pk {status, generated_images[].url}; DELETE /generations/{id}; GET /me."""

    key = "leo-test-key"
    prefix = "/api/rest/v1"

    @property
    def api_base(self) -> str:
        return self.base + self.prefix

    def route(self, handler, method, path):
        if path.startswith("/cdn/"):
            if self.mode == "not_image":
                self.send(handler, 200, b"not an image", "application/octet-stream")
            else:
                task = self.tasks[path.rsplit("/", 1)[1].removesuffix(".png")]
                self.send(handler, 200, png_of(task["width"], task["height"]), "image/png")
            return
        if handler.headers.get("Authorization") != f"Bearer {self.key}":
            self.send(handler, 401, {"error": "Authentication hook unauthorized this request", "path": "$",
                                     "code": "access-denied"})
            return
        path = path.removeprefix(self.prefix)
        if method == "GET" and path == "/me":
            self.send(handler, 200, {"user_details": [{"user": {"id": "u1", "username": "box"},
                                                       "apiSubscriptionTokens": 3500, "apiPaidTokens": 0,
                                                       "apiConcurrencySlots": 5}]})
        elif method == "POST" and path == "/generations":
            body = json.loads(self.read(handler))
            self.bodies.append(body)
            if self.mode == "no_credit":
                self.send(handler, 400, {"error": "You do not have enough API tokens to perform this request.",
                                         "path": "$", "code": "unexpected"})
            elif self.mode == "invalid":
                self.send(handler, 400, {"error": "Expected a number for width", "path": "$.body.width",
                                         "code": "parse-failed"})
            else:
                generation_id = secrets.token_hex(8)
                self.tasks[generation_id] = {"polls": 0, "width": body["width"], "height": body["height"]}
                self.send(handler, 200, {"sdGenerationJob": {"generationId": generation_id, "apiCreditCost": 7,
                                                             "cost": {"amount": "7", "unit": "CREDITS"}}})
        elif method == "DELETE" and path.startswith("/generations/"):
            generation_id = path.rsplit("/", 1)[1]
            self.tasks.pop(generation_id, None)
            self.send(handler, 200, {"delete_generations_by_pk": {"id": generation_id}})
        elif method == "GET" and path.startswith("/generations/"):
            generation_id = path.rsplit("/", 1)[1]
            task = self.tasks.get(generation_id)
            if task is None:
                self.send(handler, 200, {"generations_by_pk": None})
                return
            task["polls"] += 1
            if self.mode == "pending" or task["polls"] <= self.polls_before_ready:
                status, images = "PENDING", []
            elif self.mode == "failed":
                status, images = "FAILED", []
            else:
                status = "COMPLETE"
                images = [{"id": "img1", "url": f"{self.base}/cdn/{generation_id}.png",
                           "nsfw": self.mode == "moderated"}]
            self.send(handler, 200, {"generations_by_pk": {"id": generation_id, "status": status,
                                                           "generated_images": images}})
        else:
            self.send(handler, 404, {"error": "not found", "path": "$", "code": "not-found"})


class StabilityStandIn(StandIn):
    """api.stability.ai: POST /v2beta/stable-image/edit/remove-background (multipart image, output_format) →
    the PNG itself with Accept: image/*; errors {id, name, errors}; GET /v1/user/balance."""

    key = "sk-stability-test"

    def route(self, handler, method, path):
        if handler.headers.get("Authorization") != f"Bearer {self.key}":
            self.send(handler, 401, {"id": "e1", "name": "unauthorized", "errors": ["missing or invalid API key"]})
            return
        if method == "GET" and path == "/v1/user/balance":
            self.send(handler, 200, {"credits": 42.0})
        elif method == "POST" and path == "/v2beta/stable-image/edit/remove-background":
            raw = self.read(handler)
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + handler.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
            parts = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                     for part in message.iter_parts()}
            self.bodies.append({"output_format": parts.get("output_format", b"").decode(),
                                "accept": handler.headers.get("Accept")})
            if self.mode == "moderated":
                self.send(handler, 403, {"id": "e2", "name": "content_moderation",
                                         "errors": ["Your request was flagged by our content moderation system"]})
            elif self.mode == "no_credit":
                self.send(handler, 402, {"id": "e3", "name": "payment_required",
                                         "errors": ["You lack sufficient credits to make this request"]})
            elif self.mode == "not_image":
                self.send(handler, 200, b"<html>oops</html>", "image/png")
            else:
                with Image.open(io.BytesIO(parts["image"])) as source:
                    size = source.size
                self.send(handler, 200, png_of(*size, mode="RGBA"), "image/png",
                          headers={"finish-reason": "SUCCESS", "seed": "1"})
        else:
            self.send(handler, 404, {"id": "e4", "name": "not_found", "errors": ["not found"]})
