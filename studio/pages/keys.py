"""API keys (/keys): create (shown once), list by prefix, revoke; each key's webhook (URL, secret shown once) and
the latest webhook deliveries; ready-to-paste snippets."""

from __future__ import annotations

from nicegui import ui

from engine.accounts.users import display_prefix
from engine.data.tables import ApiKey, User, WebhookDelivery
from engine.errors import EngineError
from engine.generation.pipelines import WeightsState
from engine.service import ImageEngine
from engine.tools.wordpress_plugin import ZIP_NAME
from studio import auth
from studio.layout import card, frame
from studio.offload import off_loop
from studio.widgets import ModelChoice, default_model, empty_state, model_choices, when


def register(engine: ImageEngine) -> None:
    @ui.page("/keys", title="API keys · Image Studio")
    async def keys_page():
        user = await auth.require_user(engine, "/keys")
        if user is None:
            return
        keys = await off_loop(KeysPage.read, engine, user.id)
        choices = await off_loop(model_choices, engine)
        deliveries = await off_loop(engine.webhooks.deliveries, user.id, DELIVERIES_SHOWN)
        with frame(user, "/keys", "API keys", "Let your sites, apps and scripts generate images on this server."):
            KeysPage(engine, user, server_url(engine), keys, deliveries, snippet_model(engine, user, choices))


DELIVERIES_SHOWN = 20
DELIVERY_COLORS = {"delivered": "positive", "pending": "warning", "failed": "negative"}


def snippet_model(engine: ImageEngine, user: User, choices: list[ModelChoice]) -> str:
    """A model the snippets can run on this box right now: loaded or with its weights here, the user's or the
    server's default first (a model still to be downloaded only when none is here)."""
    here = [c for c in choices if c.state in (WeightsState.LOADED, WeightsState.READY)]
    return default_model(engine, here or choices, (user.preferences or {}).get("default_model"))


def server_url(engine: ImageEngine) -> str:
    """The public URL when configured, else the address this browser reached the server at."""
    return (engine.settings.public_url or str(ui.context.client.request.base_url)).rstrip("/")


def snippets(base: str, model: str) -> dict[str, tuple[str, str]]:
    """(language, code) per tab; the key comes from the environment, never pasted into code."""
    prompt = "a lighthouse at dusk, oil painting"
    curl = f"""curl -s {base}/api/v1/generate \\
  -H "Authorization: Bearer $IMAGESTUDIO_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '{{"prompt": "{prompt}", "model": "{model}", "width": 512, "height": 512}}'"""
    javascript = f"""// Server-side (Node 18+): keep the key out of browser code.
const response = await fetch("{base}/api/v1/generate", {{
  method: "POST",
  headers: {{
    "Authorization": `Bearer ${{process.env.IMAGESTUDIO_API_KEY}}`,
    "Content-Type": "application/json",
  }},
  body: JSON.stringify({{ prompt: "{prompt}", model: "{model}", width: 512, height: 512 }}),
}});
const {{ success, data, error }} = await response.json();
if (!success) throw new Error(error.message);
console.log(data.image); // a hosted PNG link, or a data: URL when storage is off"""
    php = f"""<?php
// In wp-config.php: define('IMAGESTUDIO_API_KEY', 'sk_live_…');
$response = wp_remote_post('{base}/api/v1/generate', [
    'headers' => [
        'Authorization' => 'Bearer ' . IMAGESTUDIO_API_KEY,
        'Content-Type'  => 'application/json',
    ],
    'body'    => wp_json_encode(['prompt' => '{prompt}', 'model' => '{model}', 'width' => 512, 'height' => 512]),
    'timeout' => 120,
]);
if (is_wp_error($response)) {{
    error_log($response->get_error_message());
    return;
}}
$body = json_decode(wp_remote_retrieve_body($response), true);
if (!empty($body['success'])) {{
    echo '<img src="' . esc_attr($body['data']['image']) . '" alt="' . esc_attr($body['data']['prompt']) . '">';
}}"""
    return {"curl": ("bash", curl), "JavaScript": ("javascript", javascript), "WordPress (PHP)": ("php", php)}


class KeysPage:
    def __init__(self, engine: ImageEngine, user: User, base_url: str, keys: list[ApiKey],
                 deliveries: list[WebhookDelivery], model: str):
        """``keys``: ``KeysPage.read(engine, user.id)``, and the latest webhook deliveries, read off the loop."""
        self.engine = engine
        self.guard = auth.Guard(engine, user)
        self.dialogs = ui.element("div")
        with card("Create a key", icon="add_circle"):
            with ui.row().classes("w-full items-start gap-2"):
                self.name = ui.input("Name", placeholder="e.g. my-wordpress-site",
                                     validation={"100 characters at most": lambda v: len(v or "") <= 100}) \
                    .props("outlined dense").classes("grow min-w-48").mark("key-name").props("data-testid=key-name")
                ui.button("Create key", icon="add", on_click=self.create).props("unelevated no-caps") \
                    .classes("mt-0.5").mark("create-key").props("data-testid=create-key")
            self.name.on("keydown.enter", self.create)
        with card("Your keys", icon="key"):
            self.list_box = ui.column().classes("w-full gap-0").mark("key-list")
        with card("Webhook deliveries", icon="webhook"):
            with ui.row().classes("w-full items-center gap-2"):
                ui.label("Async requests with a callback_url (or a key's default webhook) are reported when the "
                         "job ends, signed with the key's secret (Standard Webhooks), retried for a day.") \
                    .classes("text-sm studio-muted grow")
                ui.button(icon="refresh", on_click=self.refresh_deliveries).props('flat round dense aria-label="Refresh"') \
                    .tooltip("Refresh").mark("refresh-deliveries")
            self.delivery_box = ui.column().classes("w-full gap-0").mark("delivery-list")
        self._draw_deliveries(deliveries)
        with card("Use the API", icon="code"):
            ui.label(f"Send requests to {base_url}/api/v1 with your key as a Bearer token. "
                     "Set IMAGESTUDIO_API_KEY to a key from above.").classes("text-sm studio-muted") \
                .mark("api-base")
            with ui.row().classes("items-center gap-2 text-sm"):
                ui.icon("extension", size="18px").classes("text-primary")
                ui.label("WordPress:")
                ui.link("download the Image Studio plugin", f"/downloads/{ZIP_NAME}").mark("wordpress-plugin")
                ui.label("(Plugins → Add New → Upload Plugin; then Settings → Image Studio with this URL and a "
                         "key of its own)").classes("studio-muted")
            examples = snippets(base_url, model)
            with ui.tabs().props("dense align=left no-caps").classes("w-full") as tabs:
                for title in examples:
                    ui.tab(title)
            with ui.tab_panels(tabs, value="curl").classes("w-full bg-transparent"):
                for title, (language, code) in examples.items():
                    with ui.tab_panel(title).classes("p-0"):
                        snippet = ui.code(code, language=language).classes("w-full text-xs studio-code") \
                            .mark(f"snippet-{language}")
                        snippet.copy_button.props('aria-label="Copy the code"')
        self._shown = 0  # the newest refresh; an older one that answers late draws nothing
        self._draw(keys)

    @staticmethod
    def read(engine: ImageEngine, user_id: str) -> list[ApiKey]:
        """The user's keys, live ones first, newest first (blocking: call it off the loop)."""
        keys = engine.accounts.api_keys(user_id)
        return sorted(keys, key=lambda k: (k.revoked_at is not None, -k.created_at.timestamp()))

    async def refresh(self) -> None:
        self._shown += 1
        mine = self._shown
        keys = await off_loop(self.read, self.engine, self.guard.user_id)
        if mine != self._shown or self.list_box.is_deleted:
            return
        self._draw(keys)

    def _draw(self, keys: list[ApiKey]) -> None:
        self.list_box.clear()
        with self.list_box:
            if not keys:
                empty_state("key", "No keys yet", "Create one above to call the API.")
            for index, key in enumerate(keys):
                if index:
                    ui.separator()
                self._row(key)

    def _row(self, key: ApiKey) -> None:
        prefix = display_prefix(key)
        with ui.row().classes("w-full items-center gap-3 py-3").mark(f"key-{key.prefix}"):
            ui.icon("key_off" if key.revoked_at else "key", size="22px") \
                .classes("studio-muted" if key.revoked_at else "text-primary")
            with ui.column().classes("gap-0 grow min-w-0"):
                with ui.row().classes("items-center gap-2"):
                    ui.label(key.name or "unnamed").classes("font-medium")
                    ui.label(prefix).classes("font-mono text-sm studio-muted")
                    if key.revoked_at:
                        ui.chip("revoked", color="grey", text_color="white").props("dense square").classes("text-xs")
                ui.label(f"Created {when(key.created_at)} · last used {when(key.last_used_at)}"
                         + (f" · revoked {when(key.revoked_at)}" if key.revoked_at else "")
                         + (f" · webhook {key.webhook_url}" if key.webhook_url and not key.revoked_at else "")) \
                    .classes("text-xs studio-muted break-all")
            if key.revoked_at is None:
                ui.button("Webhook", icon="webhook", on_click=lambda k=key: self.edit_webhook(k)) \
                    .props("flat dense no-caps").mark(f"webhook-{key.prefix}")
                ui.button("Revoke", icon="block", on_click=lambda k=key: self.confirm_revoke(k)) \
                    .props("flat dense no-caps color=negative").mark(f"revoke-{key.prefix}")

    async def create(self) -> None:
        user = await self.guard.user()
        if user is None:
            return
        try:
            key, full_key = await off_loop(self.engine.accounts.create_api_key, user.id,
                                           (self.name.value or "").strip())
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        self.name.value = ""
        await self.refresh()
        self.dialogs.clear()
        with self.dialogs, ui.dialog().props("persistent") as dialog, \
                ui.card().classes("w-full max-w-xl p-6 gap-4").mark("new-key-dialog"):
            ui.label("Your new API key").classes("text-lg font-semibold")
            with ui.row().classes("w-full items-center gap-2 no-wrap rounded-lg p-3 bg-amber-500/10"):
                ui.icon("warning", color="warning")
                ui.label("Copy it now: this is the only time the full key is shown. "
                         "Store it like a password.").classes("text-sm")
            with ui.row().classes("w-full items-center gap-2 no-wrap"):
                ui.input(value=full_key).props("outlined dense readonly").classes("grow font-mono") \
                    .mark("new-key").props("data-testid=new-key")
                ui.button(icon="content_copy", on_click=lambda: self._copy(full_key)) \
                    .props('unelevated aria-label="Copy the key"') \
                    .mark("copy-key").tooltip("Copy")
            ui.label(f"Shown from now on as {display_prefix(key)}").classes("text-xs studio-muted")
            with ui.row().classes("w-full justify-end"):
                ui.button("I have stored it", on_click=dialog.close).props("unelevated no-caps") \
                    .mark("close-key").props("data-testid=close-key")
        dialog.open()

    @staticmethod
    def _copy(full_key: str) -> None:
        ui.clipboard.write(full_key)
        ui.notify("Key copied.", type="positive")

    def confirm_revoke(self, key: ApiKey) -> None:
        self.dialogs.clear()
        with self.dialogs, ui.dialog() as dialog, ui.card().classes("p-5 gap-3"):
            ui.label(f"Revoke {display_prefix(key)}?").classes("text-lg font-semibold")
            ui.label("Requests with this key fail from now on. This can't be undone.").classes("text-sm studio-muted")
            with ui.row().classes("w-full justify-end gap-2"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Revoke", on_click=lambda: self.revoke(key, dialog)) \
                    .props("unelevated no-caps color=negative").mark("confirm-revoke")
        dialog.open()

    async def revoke(self, key: ApiKey, dialog: ui.dialog) -> None:
        dialog.close()
        if await self.guard.user() is None:
            return
        try:  # only ever this user's key
            await off_loop(self.engine.accounts.revoke_api_key, key.id, user_id=self.guard.user_id)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        ui.notify(f"Revoked {display_prefix(key)}.", type="positive")
        await self.refresh()

    # -- webhooks ----------------------------------------------------------------------------------
    def edit_webhook(self, key: ApiKey) -> None:
        self.dialogs.clear()
        with self.dialogs, ui.dialog() as dialog, ui.card().classes("w-full max-w-xl p-6 gap-3") \
                .mark("webhook-dialog"):
            ui.label(f"Webhook of {display_prefix(key)}").classes("text-lg font-semibold")
            ui.label("Where this key's async requests are reported when they give no callback_url of their own "
                     "(empty: only per request). Saving makes the key a new signing secret: the old one stops "
                     "verifying.").classes("text-sm studio-muted")
            url = ui.input("Default callback URL", value=key.webhook_url or "",
                           placeholder="https://example.com/hooks/image-studio",
                           validation={"2000 characters at most": lambda v: len(v or "") <= 2000}) \
                .props("outlined dense").classes("w-full").mark("webhook-url")
            secret_box = ui.column().classes("w-full gap-2")
            with ui.row().classes("w-full justify-end gap-2") as buttons:
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
                ui.button("Save and make a secret", icon="key",
                          on_click=lambda: self.save_webhook(key, url, secret_box, buttons, dialog)) \
                    .props("unelevated no-caps").mark("save-webhook")
        dialog.open()

    async def save_webhook(self, key: ApiKey, url: ui.input, secret_box: ui.column, buttons: ui.row,
                           dialog: ui.dialog) -> None:
        if await self.guard.user() is None:
            return
        try:  # only ever this user's key; a private or malformed URL is refused with its reason
            secret = await off_loop(self.engine.webhooks.configure, key.id, (url.value or "").strip() or None,
                                    user_id=self.guard.user_id)
        except EngineError as exc:
            ui.notify(exc.message, type="negative")
            return
        url.props("readonly")
        buttons.clear()
        with secret_box:
            with ui.row().classes("w-full items-center gap-2 no-wrap rounded-lg p-3 bg-amber-500/10"):
                ui.icon("warning", color="warning")
                ui.label("The signing secret, shown only now: verify the webhook-signature header with it.") \
                    .classes("text-sm")
            with ui.row().classes("w-full items-center gap-2 no-wrap"):
                ui.input(value=secret).props("outlined dense readonly").classes("grow font-mono") \
                    .mark("webhook-secret")
                ui.button(icon="content_copy", on_click=lambda: ui.clipboard.write(secret)) \
                    .props('unelevated aria-label="Copy the secret"') \
                    .tooltip("Copy")
        with buttons:
            ui.button("Done", on_click=dialog.close).props("unelevated no-caps").mark("close-webhook")
        await self.refresh()

    async def refresh_deliveries(self) -> None:
        deliveries = await off_loop(self.engine.webhooks.deliveries, self.guard.user_id, DELIVERIES_SHOWN)
        if not self.delivery_box.is_deleted:
            self._draw_deliveries(deliveries)

    def _draw_deliveries(self, deliveries: list[WebhookDelivery]) -> None:
        self.delivery_box.clear()
        with self.delivery_box:
            if not deliveries:
                empty_state("webhook", "No deliveries yet", "Send an async request with a callback_url, or give a "
                            "key a default webhook.")
            for index, delivery in enumerate(deliveries):
                if index:
                    ui.separator()
                with ui.row().classes("w-full items-center gap-3 py-2 no-wrap").mark(f"delivery-{delivery.id}"):
                    ui.chip(delivery.status, color=DELIVERY_COLORS.get(delivery.status, "grey"),
                            text_color="white").props("dense square").classes("text-xs")
                    with ui.column().classes("gap-0 grow min-w-0"):
                        ui.label(f"{delivery.payload.get('type', '')} · job {delivery.job_id}") \
                            .classes("text-sm font-medium")
                        ui.label(delivery.url).classes("text-xs font-mono studio-muted break-all")
                    answer = (f"HTTP {delivery.last_status_code}" if delivery.last_status_code
                              else delivery.last_error or "not tried yet")
                    ui.label(f"{delivery.attempts} attempt{'s' if delivery.attempts != 1 else ''} · {answer} · "
                             f"{when(delivery.created_at)}").classes("text-xs studio-muted text-right")
