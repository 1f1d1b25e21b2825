"""The ``imagestudio`` command: serve, generate, keys, models, and the WordPress plugin's zip."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Annotated

import typer

from engine.config import Settings
from engine.errors import EngineError
from engine.tools.wordpress_plugin import ZIP_NAME, build_zip

app = typer.Typer(help="Image Studio: self-hosted image generation with a REST API and a web studio.",
                  no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
models_app = typer.Typer(help="List and pull models.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
db_app = typer.Typer(help="The database schema (Alembic migrations; the server also applies them at start).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(users_app, name="users")
providers_app = typer.Typer(help="Vendor APIs for the proprietary models (BFL, Leonardo.Ai, Stability AI).",
                            no_args_is_help=True)
app.add_typer(providers_app, name="providers")


def _engine():
    from engine.service import ImageEngine

    return ImageEngine(Settings())


@app.command()
def serve(host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
          port: Annotated[int | None, typer.Option(help="Port")] = None,
          log_level: str = "info") -> None:
    """Run the web studio (/) and the REST API (/api/v1) in one process."""
    import uvicorn

    from api.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    host, port = host or settings.host, port or settings.port
    typer.echo(f"Image Studio on http://{host}:{port}/  (API: /api/v1, OpenAPI: /docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, **settings.uvicorn_proxy_options())


@app.command()
def desktop(install: Annotated[bool, typer.Option("--install", help="Add Image Studio to this user's applications "
                                                                    "menu (Linux) and exit")] = False,
            host: Annotated[str | None, typer.Option(help="Interface the API listens on")] = None,
            port: Annotated[int | None, typer.Option(help="Port")] = None,
            log_level: str = "info") -> None:
    """The studio in its own window, while the API keeps serving on its port (needs the desktop extra)."""
    if install:
        from studio.desktop.install import install as install_entry

        try:
            written = install_entry()
        except OSError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        typer.echo(f"Installed {written[-1]} and the icon; Image Studio is in the applications menu.")
        return
    from studio.desktop.instance import ask_running_to_focus

    settings = Settings()
    already = "Image Studio is already running on this data dir: its window is in front now."
    if ask_running_to_focus(settings.data_dir):  # before the heavy imports: a second launch answers at once
        typer.echo(already)
        return
    try:
        import webview  # noqa: F401
    except ImportError:
        typer.echo('The desktop window needs pywebview and Qt: pip install -e ".[desktop]"', err=True)
        raise typer.Exit(1) from None
    from studio.desktop.app import run_desktop

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    host, port = host or settings.host, port or settings.port
    status = run_desktop(settings, host, port, log_level)
    if status is None:
        typer.echo(already)
        return
    raise typer.Exit(status)


@app.command("wordpress-plugin")
def wordpress_plugin(out: Annotated[Path, typer.Option(help="Where to write the zip")] = Path(ZIP_NAME)) -> None:
    """Build the WordPress plugin's installable zip (Plugins → Add New → Upload Plugin)."""
    try:
        data = build_zip()
    except EngineError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    out.write_bytes(data)
    typer.echo(f"{out}: the Image Studio plugin ({len(data) // 1024} KiB). In WordPress: Plugins → Add New → "
               "Upload Plugin, then Settings → Image Studio.")


@app.command()
def generate(prompt: str,
             model: Annotated[str | None, typer.Option(help="Model slug (see `imagestudio models list`)")] = None,
             out: Annotated[Path, typer.Option(help="Where to write the PNG")] = Path("image.png"),
             width: int = 512, height: int = 512, steps: int | None = None, seed: int | None = None,
             negative_prompt: str | None = None) -> None:
    """Generate one image on this machine and write it as a PNG."""
    from engine.generation.params import GenerationParams

    engine = _engine()
    engine.start()
    try:
        user = _cli_user(engine)
        params = GenerationParams(prompt=prompt, model=model, width=width, height=height, steps=steps, seed=seed,
                                  negative_prompt=negative_prompt)
        result = engine.generate(user, params, store=False)
    finally:
        engine.stop()
    out.write_bytes(result.png)
    p = result.params
    typer.echo(f"{out}: {p.width}x{p.height} {p.model} seed={p.seed} steps={p.steps} in {result.duration_ms} ms")


def _cli_user(engine):
    return engine.accounts.user_by_email("cli@localhost", create_name="Command line")


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="A label for the key")] = "default",
                email: Annotated[str, typer.Option(help="Owner; created if new")] = "admin@localhost",
                admin: Annotated[bool, typer.Option(help="Make a new owner an admin")] = False,
                plan: Annotated[str | None, typer.Option(
                    help="Plan of a new owner's workspace (default: free; the box's first admin: studio)")] = None,
                ) -> None:
    """Create an API key (the full key is shown only now). Until an admin exists, a new owner is one."""
    from engine.accounts.users import display_prefix

    engine = _engine()
    user, key, full_key = engine.accounts.key_for_owner(email, name, admin_if_new=admin, plan_slug=plan)
    typer.echo(f"Created key {display_prefix(key)} for {user.email}{' (admin)' if user.is_admin else ''}.")
    typer.echo("Store it now; it is not shown again:\n")
    typer.echo(full_key)


@keys_app.command("list")
def keys_list() -> None:
    """List keys by prefix with their owner, creation and last use."""
    from engine.accounts.users import display_prefix

    engine = _engine()
    keys, emails = engine.accounts.api_keys(), engine.accounts.emails()
    if not keys:
        typer.echo("No keys yet: imagestudio keys create --admin")
    for key in keys:
        state = "revoked" if key.revoked_at else "active"
        used = key.last_used_at.strftime("%Y-%m-%d %H:%M") if key.last_used_at else "never"
        typer.echo(f"{display_prefix(key):22} {state:8} {emails.get(key.user_id, '?'):30} "
                   f"created {key.created_at:%Y-%m-%d}  last used {used}  {key.name}")


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="Key prefix (sk_live_abcd1234) or id")]) -> None:
    """Revoke a key; it fails on the very next request."""
    from engine.accounts.users import display_prefix
    from engine.errors import NotFound

    engine = _engine()
    try:
        revoked = engine.accounts.revoke_api_key(key)
    except NotFound as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Revoked {display_prefix(revoked)}")


@users_app.command("reset-password")
def users_reset_password(
        email: Annotated[str, typer.Argument(help="The user's email")],
        generate: Annotated[bool, typer.Option("--generate", help="Make a random password and print it")] = False,
) -> None:
    """Set a user's password (asked twice, not echoed) and sign them out everywhere; their API keys keep working."""
    if generate:
        password = secrets.token_urlsafe(12)
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        user = _engine().admin.reset_password(email, password)
    except EngineError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Password of {user.email} reset; their sessions ended.")
    if generate:
        typer.echo(f"New password (shown once): {password}")


@models_app.command("list")
def models_list() -> None:
    """Every model with whether it can run here."""
    engine = _engine()
    aliases = engine.model_aliases()
    for spec in engine.catalog.all(helpers=True):
        state, reason = engine.pipelines.state(spec)
        if not spec.text_to_image:
            reason = f"{spec.task} helper" + (f"; {reason}" if reason else "")
        if spec.slug in aliases:
            state, reason = "alias", f"runs {aliases[spec.slug]}"
        typer.echo(f"{spec.slug:20} {state:13} {spec.name}" + (f"  ({reason})" if reason else ""))
    for slug, target in aliases.items():
        if not any(spec.slug == slug for spec in engine.catalog.all(helpers=True)):
            typer.echo(f"{slug:20} {'alias':13} runs {target}")


@models_app.command("alias")
def models_alias(slug: Annotated[str, typer.Argument(help="The slug clients ask for, e.g. flux-2-pro")],
                 target: Annotated[str | None, typer.Argument(help="The model that runs it here, e.g. flux-2-dev")]
                 = None,
                 remove: Annotated[bool, typer.Option("--remove", help="Remove the alias")] = False) -> None:
    """Serve a slug with another model (e.g. a proprietary slug with an open model); responses name both."""

    engine = _engine()
    try:
        if remove:
            engine.remove_model_alias(slug)
            typer.echo(f"Removed the alias {slug}")
            return
        if target is None:
            typer.echo("give the model that runs it: imagestudio models alias SLUG TARGET", err=True)
            raise typer.Exit(2)
        engine.set_model_alias(slug, target)
    except EngineError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{slug} now runs {target}")


@models_app.command("recommend")
def models_recommend() -> None:
    """This machine (GPU and memory, or CPU and RAM, free disk) and the catalog model that runs well on it."""
    from engine.generation.hardware import detect, recommend, size_text

    engine = _engine()
    machine = detect(engine.settings.models_dir)
    choice = recommend(machine, engine.catalog)
    typer.echo(f"This machine: {machine.summary()}")
    if choice.spec is None:
        typer.echo(f"No recommendation: {choice.reason}.")
        return
    here = engine.pipelines.weights_here(choice.spec)
    typer.echo(f"Recommended: {choice.spec.slug} ({choice.spec.name}), a {size_text(choice.download_bytes)} "
               f"download{' (already here)' if here else ''}")
    typer.echo(f"Why: {choice.reason}")
    if not here:
        typer.echo(f"Pull it: imagestudio models pull {choice.spec.slug} --default")


def _bar(event, width: int = 24) -> str:
    filled = int(width * event.fraction)
    return f"\r[{'#' * filled}{'-' * (width - filled)}] {event.fraction:4.0%} {event.text()}   "


@models_app.command("pull")
def models_pull(slug: str,
                default: Annotated[bool, typer.Option("--default", help="Make it the default model once pulled")]
                = False) -> None:
    """Download a model's weights into the data folder (tiny models are built locally), with a progress bar.
    Ctrl-C cancels; the next pull resumes where it stopped."""
    import threading

    engine = _engine()
    cancel = threading.Event()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["path"] = engine.pull_model(slug, events=lambda e: typer.echo(_bar(e), nl=False, err=True),
                                                cancel=cancel, make_default=default)
        except EngineError as exc:
            outcome["error"] = exc
        except OSError as exc:  # the disk refused a write
            outcome["error"] = EngineError(f"pulling {slug} failed writing to the models folder: {exc}")
        finally:
            finished.set()

    # The pull runs on a thread so that Ctrl-C (a KeyboardInterrupt here, in the main thread) can cancel it between
    # chunks. An Event, not Thread.join: a join that a KeyboardInterrupt broke may not wait again.
    finished = threading.Event()
    threading.Thread(target=work, name=f"pull-{slug}", daemon=True).start()
    try:
        while not finished.wait(0.2):
            pass
    except KeyboardInterrupt:
        cancel.set()
        finished.wait()
    typer.echo("", err=True)  # past the progress bar's line
    if "error" in outcome:
        typer.echo(outcome["error"].message, err=True)
        raise typer.Exit(130 if cancel.is_set() else 1)
    typer.echo(f"{slug} is ready in {outcome['path']}" + (" and is now the default model" if default else ""))


@models_app.command("add")
def models_add(slug: str, source: Annotated[str, typer.Argument(help="Hub repo id or a local diffusers folder")],
               family: Annotated[str, typer.Option(help="sd | sdxl | flux | flux2 | flux2-klein")] = "sd",
               name: str | None = None) -> None:
    """Add your own model: a hub repository id or a local diffusers folder."""

    engine = _engine()
    try:
        spec = engine.catalog.add_custom(slug, source, family, name=name)
    except EngineError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Added {spec.slug} ({spec.family}) from {source}")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Migrate the database (IMAGESTUDIO_DATABASE_URL, or SQLite in the data dir) to the newest schema."""
    from engine.data.schema import upgrade_database

    settings = Settings()
    settings.ensure_dirs()
    before, after = upgrade_database(settings.db_url, revision)
    typer.echo(f"database at revision {after}" + (f" (was {before})" if before != after else " (no change)"))


@db_app.command("current")
def db_current() -> None:
    """The database's schema revision."""
    from engine.data.schema import database_revision

    settings = Settings()
    settings.ensure_dirs()
    typer.echo(database_revision(settings.db_url) or "no schema yet")


if __name__ == "__main__":
    app()


def _provider_name(name: str) -> str:
    from engine.providers.registry import PROVIDER_NAMES

    if name not in PROVIDER_NAMES:
        typer.echo(f"unknown provider '{name}'; one of {', '.join(PROVIDER_NAMES)}", err=True)
        raise typer.Exit(2)
    return name


@providers_app.command("list")
def providers_list() -> None:
    """Each provider (key set or not) and where each vendor slug runs."""
    from engine.providers.registry import LABELS, PROVIDER_NAMES, VENDOR_MODELS

    engine = _engine()
    for name in PROVIDER_NAMES:
        config = engine.runtime.get(f"provider_{name}") or {}
        typer.echo(f"{name:10} {LABELS[name]:18} key {'set' if config.get('api_key') else 'not set'}"
                   + (f", {config['base_url']}" if config.get("base_url") else ""))
    for slug in VENDOR_MODELS:
        route = engine.route_for(slug)
        typer.echo(f"  {slug:18} " + (f"via {route.label}, {route.price[0]}/{route.price[1]} credits" if route
                                      else "not routed"))
    typer.echo(f"  background removal: {engine.runtime.get('background_removal')}")


@providers_app.command("set")
def providers_set(name: Annotated[str, typer.Argument(help="bfl, leonardo or stability")],
                  key: Annotated[str, typer.Option("--key", help="The vendor API key (stored encrypted)")],
                  base_url: Annotated[str | None, typer.Option("--base-url", help="Another base URL")] = None) -> None:
    """Set a provider's API key (and base URL)."""
    name = _provider_name(name)
    engine = _engine()
    engine.runtime.set(f"provider_{name}", {"api_key": key, **({"base_url": base_url} if base_url else {})})
    typer.echo(f"{name}: key saved (encrypted)")


@providers_app.command("test")
def providers_test(name: Annotated[str, typer.Argument(help="bfl, leonardo or stability")]) -> None:
    """Call the vendor with the saved key (a cheap account check)."""
    try:
        typer.echo(_engine().test_provider(_provider_name(name)))
    except EngineError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from exc


@providers_app.command("route")
def providers_route(slug: Annotated[str, typer.Argument(help="A vendor slug, e.g. flux-2-pro")],
                    target: Annotated[str, typer.Argument(help="The provider, or 'off'")]) -> None:
    """Send a slug to its vendor, or not ('off')."""
    from engine.providers.registry import VENDOR_MODELS

    if slug not in VENDOR_MODELS or (target != "off" and VENDOR_MODELS[slug][0] != target):
        typer.echo(f"'{slug}' can go to {VENDOR_MODELS[slug][0] if slug in VENDOR_MODELS else 'no provider'}",
                   err=True)
        raise typer.Exit(2)
    engine = _engine()
    engine.runtime.set("provider_routes", engine.runtime.get("provider_routes") | {slug: "" if target == "off"
                                                                                   else target})
    typer.echo(f"{slug}: {'not routed' if target == 'off' else 'via ' + target}")


@providers_app.command("price")
def providers_price(slug: Annotated[str, typer.Argument(help="A vendor slug")],
                    small: Annotated[int, typer.Argument(help="Credits per image up to 512x512", min=0)],
                    large: Annotated[int, typer.Argument(help="Credits per larger image", min=0)]) -> None:
    """Set the credit price of a vendor slug."""
    engine = _engine()
    engine.runtime.set("provider_prices", engine.runtime.get("provider_prices") | {slug: [small, large]})
    typer.echo(f"{slug}: {small}/{large} credits")
