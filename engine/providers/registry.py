"""Which slugs run at which vendor, with which key, at what price: the admin's provider settings.

Runtime settings (Admin → Providers, or the API's admin routes), each provider's key encrypted at rest:

- ``provider_<name>``: ``{"api_key": …, "base_url": …}`` for ``bfl``, ``leonardo`` and ``stability``;
- ``provider_routes``: slug → provider name. The proprietary slugs of the seed documents go to their vendor by
  default once it has a key (``flux-2-pro`` → BFL; ``lucid-origin``, ``phoenix-1`` → Leonardo.Ai); an open
  model (``flux-schnell``, ``flux-2-dev``…) goes to a vendor only if the admin routes it there, and only while
  its weights are not on this machine. ``""`` turns a default route off;
- ``provider_prices``: slug → ``[credits up to 512², credits above]`` (vendor calls cost real money: the
  defaults below are above every local model's);
- ``background_removal``: ``"local"`` (rembg) or ``"stability"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.providers.base import Provider, ProviderConfig

PROVIDER_NAMES = ("bfl", "leonardo", "stability")
LABELS = {"bfl": "BFL API", "leonardo": "Leonardo.Ai API", "stability": "Stability AI API"}
DEFAULT_BASE_URLS = {"bfl": "https://api.bfl.ai", "leonardo": "https://cloud.leonardo.ai/api/rest/v1",
                     "stability": "https://api.stability.ai"}
# Where results are downloaded from besides the base URL's host (signed URLs on the vendors' CDNs).
RESULT_HOSTS = {"bfl": (".bfl.ai",), "leonardo": ("cdn.leonardo.ai", ".leonardo.ai"), "stability": ()}

# slug -> (provider, the vendor's model): what each slug is at its vendor.
VENDOR_MODELS: dict[str, tuple[str, str]] = {
    "flux-2-pro": ("bfl", "flux-2-pro"),
    "lucid-origin": ("leonardo", "7b592283-e8a7-4c5a-9ba6-d18c31f258b9"),
    "phoenix-1": ("leonardo", "de7d3faf-762f-48e0-b3b7-9d0ac3a3fcf3"),
    # Open models that BFL also serves: only when the admin routes them there and their weights are absent.
    # (BFL has no endpoint for FLUX.1 [schnell] or FLUX.2 [dev]: those run here or not at all.)
    "flux-2-klein-4b": ("bfl", "flux-2-klein-4b"),
    "flux-2-klein-9b": ("bfl", "flux-2-klein-9b"),
}
DEFAULT_ROUTES = {"flux-2-pro": "bfl", "lucid-origin": "leonardo", "phoenix-1": "leonardo"}
DEFAULT_PRICES: dict[str, tuple[int, int]] = {
    "flux-2-pro": (8, 10),
    "lucid-origin": (6, 8),
    "phoenix-1": (6, 8),
    "flux-2-klein-4b": (3, 4),
    "flux-2-klein-9b": (3, 4),
}


@dataclass(frozen=True)
class Route:
    provider: str  # a PROVIDER_NAMES entry
    vendor_model: str
    price: tuple[int, int]

    @property
    def label(self) -> str:
        return LABELS[self.provider]


def provider_config(runtime_value: dict | None, name: str) -> ProviderConfig | None:
    """The provider's configuration from its runtime setting; None without a key."""
    value = runtime_value or {}
    if not value.get("api_key"):
        return None
    return ProviderConfig(api_key=value["api_key"], base_url=value.get("base_url") or DEFAULT_BASE_URLS[name],
                          result_hosts=RESULT_HOSTS[name], timeout_s=float(value.get("timeout_s") or 300.0),
                          poll_interval_s=float(value.get("poll_interval_s") or 1.0))


def make_provider(name: str, config: ProviderConfig, http=None) -> Provider:
    from engine.providers.bfl import BflProvider
    from engine.providers.leonardo import LeonardoProvider
    from engine.providers.stability import StabilityProvider

    cls = {"bfl": BflProvider, "leonardo": LeonardoProvider, "stability": StabilityProvider}[name]
    return cls(config, http=http)
