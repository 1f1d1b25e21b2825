"""Prompt tools: a structured prompt builder and a prompt enhancer.

``build_prompt`` joins structured fields (subject, setting, mood...) into one
clean prompt. ``enhance_prompt_builtin`` enriches a prompt offline and
deterministically: it guesses what the picture is of (portrait, landscape,
product...) and adds fitting composition, lighting, detail and quality words
plus tone-specific style words. ``PromptEnhancer`` can instead ask a text model
(an OpenAI-compatible endpoint or a local transformers model); whenever that
model fails, it falls back to the built-in enhancer instead of raising.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from engine.errors import InvalidRequest
from engine.generation.inputs import check_service_url

log = logging.getLogger(__name__)

MAX_FIELD_CHARS = 500
MAX_PROMPT_CHARS = 10_000
MAX_ENHANCED_CHARS = 2000  # what generation accepts (GenerationParams.prompt)
MAX_TONE_CHARS = 100

DEFAULT_TONE = "photographic"
PROVIDERS = ("builtin", "openai", "transformers")


# ---------------------------------------------------------------------------
# Shared text helpers
# ---------------------------------------------------------------------------

def _clean_text(text: str) -> str:
    """One line, single spaces, tidy commas, no dangling punctuation at either end."""
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*,(?:\s*,)+", ",", text)  # ", ," -> ","
    text = re.sub(r"\s*,\s*", ", ", text)
    return text.strip(" ,;")


def _contains_phrase(text: str, phrase: str) -> bool:
    """Whole-phrase, case-insensitive match ("lit" does not match "split")."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.IGNORECASE) is not None


# Words showing that a text already talks about light, so no competing lighting is added.
_MENTIONS_LIGHTING = re.compile(
    r"\b\w*(?:lights?|lighting|lit)\b|\billuminat\w*|\bgolden hour\b|\bblue hour\b|\bglow(?:ing)?\b", re.IGNORECASE)
_MENTIONS_CAMERA = re.compile(
    r"\b\d+\s?mm\b|\blens\b|\bcamera\b|\bdslr\b|\bshot on\b|\bcanon\b|\bnikon\b|\bsony\b|\bleica\b|\bhasselblad\b"
    r"|\bfuji\w*|\biphone\b|\bkodak\b|\bpolaroid\b|\bgopro\b|\bdrone\b|\b35mm film\b", re.IGNORECASE)
# A non-photographic medium: adding "photorealistic" or a lens would fight the user's intent.
_MENTIONS_ART_MEDIUM = re.compile(
    r"\b(?:painting|painted|watercolou?r|oil on canvas|gouache|acrylic|illustration|drawing|drawn|sketch|pencil"
    r"|charcoal|ink|anime|manga|cartoon|comic|pixel art|vector|3d render|cgi|low poly|clay|claymation"
    r"|digital art|concept art|line art|woodcut|linocut|mosaic|stained glass|origami|papercut)\b", re.IGNORECASE)


# ---------------------------------------------------------------------------
# Structured prompt builder
# ---------------------------------------------------------------------------

_BUILDER_FIELDS = ("subject", "setting", "mood", "art_style", "lighting", "camera", "extras")

# A setting that already starts with one of these reads fine without an added "in".
_PLACE_WORDS = frozenset(
    "in at on under inside near by among amid amidst over above below beneath within through across along against "
    "beside behind between beyond outside around during into underneath atop surrounded overlooking from".split())
_MOOD_WORDS = re.compile(r"\b(?:mood|moody|atmosphere|atmospheric|ambien[cs]e|vibes?|feel|feeling|tone)\b", re.I)
_STYLE_WORDS = re.compile(
    r"\b(?:style|styled|painting|art|artwork|illustration|drawing|render|rendering|photo|photograph|photography"
    r"|sketch|print|poster|design|aesthetic|portrait|still)\b", re.IGNORECASE)
_CAMERA_VERBS = re.compile(r"^(?:shot|taken|captured|filmed|photographed|recorded)\b", re.IGNORECASE)


def _builder_field(name: str, value) -> str:
    """Validate and clean one text field; returns "" when it is absent or blank."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be text", field=name)
    text = _clean_text(value.strip().rstrip("."))
    if len(text) > MAX_FIELD_CHARS:
        raise InvalidRequest(f"{name} must be at most {MAX_FIELD_CHARS} characters", field=name)
    return text


def _builder_extras(extras) -> list[str]:
    if extras is None:
        return []
    items = [extras] if isinstance(extras, str) else extras
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise InvalidRequest("extras must be text or a list of texts", field="extras")
    cleaned = [_clean_text(item.strip().rstrip(".")) for item in items]
    cleaned = [item for item in cleaned if item]
    if len(", ".join(cleaned)) > MAX_FIELD_CHARS:
        raise InvalidRequest(f"extras must be at most {MAX_FIELD_CHARS} characters", field="extras")
    return cleaned


def build_prompt(subject: str | None = None, setting: str | None = None, mood: str | None = None,
                 art_style: str | None = None, lighting: str | None = None, camera: str | None = None,
                 extras: str | list[str] | None = None) -> str:
    """Join structured fields into one prompt, e.g.
    "a red fox, in a snowy birch forest, serene mood, watercolor painting, soft golden hour lighting,
    shot on 85mm lens, ...". Connecting words ("in", "mood", "lighting", "shot on") are only added
    when the user did not already write them.
    """
    subject = _builder_field("subject", subject)
    setting = _builder_field("setting", setting)
    mood = _builder_field("mood", mood)
    art_style = _builder_field("art_style", art_style)
    lighting = _builder_field("lighting", lighting)
    camera = _builder_field("camera", camera)
    extra_parts = _builder_extras(extras)
    if not any((subject, setting, mood, art_style, lighting, camera, extra_parts)):
        raise InvalidRequest(f"at least one of {', '.join(_BUILDER_FIELDS)} is required", field="subject")

    if setting and setting.split(" ", 1)[0].lower() not in _PLACE_WORDS:
        setting = f"in {setting}"
    if mood and not _MOOD_WORDS.search(mood):
        mood = f"{mood} mood"
    if art_style and not _STYLE_WORDS.search(art_style):
        art_style = f"{art_style} style"
    if lighting and not _MENTIONS_LIGHTING.search(lighting):
        lighting = f"{lighting} lighting"
    if camera and not _CAMERA_VERBS.match(camera) and _MENTIONS_CAMERA.search(camera):
        camera = f"shot on {camera}"  # equipment ("85mm lens"); angles like "low angle close-up" stay as written

    parts: list[str] = []
    seen: set[str] = set()
    for part in (subject, setting, mood, art_style, lighting, camera, *extra_parts):
        if part and part.lower() not in seen:  # the same words twice add nothing
            seen.add(part.lower())
            parts.append(part)
    return _clean_text(", ".join(parts))


# ---------------------------------------------------------------------------
# Built-in enhancer: subject kinds and tones
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SubjectKind:
    """Descriptors that suit one kind of picture. ``photographic`` is False for graphic kinds (logo, abstract)."""

    keywords: tuple[str, ...]
    composition: tuple[str, ...]
    lighting: tuple[str, ...]
    details: tuple[str, ...]
    camera: str | None = None
    photographic: bool = True


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(",") if word.strip())


# Order matters: on equal keyword counts the earlier kind wins ("a logo of a fox" is a logo).
SUBJECT_KINDS: dict[str, SubjectKind] = {
    "logo": SubjectKind(
        keywords=_words("logo, icon, emblem, badge, mascot, wordmark, monogram, sticker, insignia, brand mark, "
                        "crest, typography, lettering, app icon, favicon"),
        composition=("centered composition", "clean negative space"),
        lighting=(),
        details=("flat vector shapes", "crisp clean lines", "balanced geometry", "limited color palette"),
        photographic=False,
    ),
    "portrait": SubjectKind(
        keywords=_words("portrait, woman, man, men, women, girl, boy, person, people, child, children, kid, baby, "
                        "face, selfie, headshot, model, lady, gentleman, king, queen, prince, princess, warrior, "
                        "knight, wizard, witch, soldier, dancer, actor, actress, musician, businessman, "
                        "businesswoman, grandmother, grandfather, elder, teenager, couple, family, bride, groom, "
                        "astronaut, samurai, ninja, pirate, character"),
        composition=("flattering eye-level framing", "shallow depth of field"),
        lighting=("soft diffused key light", "subtle rim light"),
        details=("detailed skin texture", "expressive eyes", "natural relaxed pose"),
        camera="85mm portrait lens",
    ),
    "animal": SubjectKind(
        keywords=_words("animal, wildlife, pet, cat, kitten, dog, puppy, fox, wolf, bird, owl, eagle, parrot, "
                        "penguin, horse, lion, tiger, bear, panda, deer, rabbit, bunny, elephant, giraffe, zebra, "
                        "monkey, squirrel, hedgehog, otter, raccoon, frog, butterfly, bee, insect, fish, whale, "
                        "dolphin, shark, turtle, snake, lizard, dragon, cow, sheep, goat, pig, duck, chicken"),
        composition=("eye-level with the animal", "subject isolated against a soft background"),
        lighting=("soft natural light", "gentle backlight on the fur"),
        details=("detailed fur and feather texture", "alert natural pose", "sharp detailed eyes"),
        camera="telephoto lens",
    ),
    "food": SubjectKind(
        keywords=_words("food, dish, meal, plate, pizza, burger, cake, dessert, coffee, latte, tea, breakfast, "
                        "lunch, dinner, salad, soup, pasta, noodles, ramen, sushi, bread, pastry, croissant, fruit, "
                        "cocktail, drink, wine, beer, chocolate, cookie, pancakes, steak, sandwich, cupcake, "
                        "ice cream, taco, curry, cheese, smoothie, recipe, cuisine"),
        composition=("appetizing 45-degree angle", "carefully styled plating"),
        lighting=("soft natural window light", "gentle backlight bringing out textures"),
        details=("fresh vibrant ingredients", "rich mouth-watering textures", "delicate garnish"),
        camera="100mm macro lens",
    ),
    "vehicle": SubjectKind(
        keywords=_words("car, cars, sports car, race car, truck, motorcycle, motorbike, bicycle, bike, scooter, "
                        "train, locomotive, airplane, plane, jet, aircraft, helicopter, ship, boat, yacht, sailboat, "
                        "spaceship, spacecraft, rocket, submarine, bus, van, tractor, vehicle, supercar"),
        composition=("dynamic three-quarter view", "low camera angle"),
        lighting=("glossy reflections on the bodywork", "rim light tracing the silhouette"),
        details=("precise mechanical details", "realistic paint and metal materials", "sense of motion"),
        camera="35mm lens",
    ),
    "product": SubjectKind(
        keywords=_words("product, bottle, perfume, fragrance, watch, wristwatch, sneaker, sneakers, shoe, shoes, "
                        "phone, smartphone, headphones, earbuds, handbag, backpack, jewelry, ring, necklace, "
                        "bracelet, cosmetics, lipstick, skincare, cream, packaging, package, mug, candle, "
                        "sunglasses, laptop, gadget, speaker, keyboard, product shot, packshot, merchandise"),
        composition=("centered hero product shot", "clean seamless backdrop"),
        lighting=("softbox studio lighting", "controlled soft reflections"),
        details=("crisp material details", "precise edges", "subtle contact shadow"),
        camera="100mm lens",
    ),
    "interior": SubjectKind(
        keywords=_words("interior, room, living room, bedroom, kitchen, bathroom, office, lobby, hallway, cafe, "
                        "restaurant, bar, library, loft, lounge, studio apartment, indoor, indoors, workspace"),
        composition=("wide-angle interior view", "balanced symmetrical composition"),
        lighting=("natural light through large windows", "warm ambient lamps"),
        details=("tasteful furniture and decor", "realistic materials and textures", "inviting atmosphere"),
        camera="wide-angle lens",
    ),
    "architecture": SubjectKind(
        keywords=_words("architecture, building, house, castle, tower, skyscraper, cathedral, church, temple, "
                        "mosque, bridge, city, cityscape, skyline, street, alley, palace, villa, cabin, cottage, "
                        "ruins, facade, monument, mansion, lighthouse, town, village, downtown"),
        composition=("strong leading lines", "corrected vertical perspective"),
        lighting=("warm golden hour light on the facades", "soft ambient sky light"),
        details=("intricate architectural details", "realistic materials and weathering", "sense of scale"),
        camera="tilt-shift lens",
    ),
    "landscape": SubjectKind(
        keywords=_words("landscape, scenery, nature, mountain, mountains, forest, woods, lake, river, ocean, sea, "
                        "beach, coast, desert, valley, waterfall, field, meadow, hills, canyon, island, glacier, "
                        "jungle, countryside, sunset, sunrise, sky, clouds, snow, trees, volcano, aurora, garden, "
                        "park, galaxy, nebula, outer space, planet, horizon"),
        composition=("sweeping wide vista", "layered foreground, midground and background"),
        lighting=("golden hour sunlight", "soft atmospheric haze"),
        details=("rich natural textures", "dramatic expansive sky", "crisp distant details"),
        camera="wide-angle lens",
    ),
    "abstract": SubjectKind(
        keywords=_words("abstract, pattern, fractal, geometric, shapes, swirl, swirls, gradient, kaleidoscope, "
                        "fluid art, wallpaper, surreal, psychedelic, generative"),
        composition=("balanced dynamic composition", "flowing interlocking forms"),
        lighting=("luminous inner glow",),
        details=("intricate layered patterns", "harmonious color palette", "smooth gradients"),
        photographic=False,
    ),
}

GENERAL_KIND = SubjectKind(
    keywords=(),
    composition=("well-balanced composition", "clear focal point"),
    lighting=("natural soft lighting",),
    details=("fine intricate details", "rich textures"),
    camera="50mm lens",
)


@dataclass(frozen=True)
class Tone:
    """Style words for one tone. ``lighting`` replaces the subject's lighting; ``graphic_style`` and
    ``graphic_quality`` replace ``style`` and ``quality`` for graphic subjects or art media (no
    "photorealistic" on a logo or a watercolor)."""

    style: tuple[str, ...]
    quality: tuple[str, ...]
    lighting: tuple[str, ...] = ()
    graphic_style: tuple[str, ...] | None = None
    graphic_quality: tuple[str, ...] | None = None
    camera: bool = False  # add the subject's lens (only photographic looks)
    detail_count: int = 3  # how many subject details to add


TONES: dict[str, Tone] = {
    "photographic": Tone(
        style=("photorealistic", "natural color grading"),
        graphic_style=("polished rendering", "faithful colors"),
        quality=("sharp focus", "high dynamic range", "ultra-detailed"),
        graphic_quality=("crisp details", "high resolution"),
        camera=True,
    ),
    "cinematic": Tone(
        style=("cinematic film still", "anamorphic widescreen framing", "teal and orange color grading"),
        graphic_style=("cinematic color grading", "widescreen composition"),
        lighting=("moody cinematic lighting", "volumetric light rays"),
        quality=("film grain", "high detail"),
        camera=True,
    ),
    "artistic": Tone(
        style=("fine art illustration", "painterly brushstrokes", "expressive color harmony"),
        quality=("masterful composition", "gallery-quality artwork"),
    ),
    "vibrant": Tone(
        style=("vivid saturated colors", "bold color palette", "energetic and joyful"),
        lighting=("bright cheerful lighting",),
        quality=("crisp details", "high contrast"),
    ),
    "minimal": Tone(
        style=("minimalist composition", "generous negative space", "muted restrained palette"),
        lighting=("soft even lighting",),
        quality=("clean lines", "uncluttered"),
        detail_count=1,  # minimal means fewer additions, not more
    ),
    "dramatic": Tone(
        style=("dramatic atmosphere", "bold contrast", "epic sense of scale"),
        lighting=("chiaroscuro lighting", "deep shadows and strong highlights"),
        quality=("intense detail", "striking composition"),
        camera=True,
    ),
    "whimsical": Tone(
        style=("whimsical storybook style", "playful charming details", "soft pastel color palette"),
        lighting=("soft magical glow",),
        quality=("dreamy atmosphere", "highly detailed illustration"),
    ),
    "professional": Tone(
        style=("clean professional look", "polished commercial quality", "accurate colors"),
        quality=("tack-sharp focus", "high resolution"),
        camera=True,
    ),
    "vintage": Tone(
        style=("vintage aesthetic", "faded retro film colors", "shot on 35mm film"),
        graphic_style=("vintage aesthetic", "faded retro colors", "worn print texture"),
        lighting=("warm nostalgic light",),
        quality=("subtle film grain", "soft vignette"),
    ),
    "dark": Tone(
        style=("dark moody atmosphere", "desaturated cold palette", "gothic undertones"),
        lighting=("low-key lighting", "deep shadows"),
        quality=("fine detail", "ominous mood"),
        camera=True,
    ),
}


def _check_prompt(prompt) -> str:
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt must be text", field="prompt")
    text = prompt.strip()
    if not text:
        raise InvalidRequest("prompt must not be blank", field="prompt")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"prompt must be at most {MAX_PROMPT_CHARS} characters", field="prompt")
    return text


def _check_tone(tone) -> str:
    """The tone as it will be used: a known tone's name, or the caller's free text ("anime, cozy"), tidied."""
    if tone is None:
        return DEFAULT_TONE
    if not isinstance(tone, str):
        raise InvalidRequest("tone must be text", field="tone")
    label = " ".join(tone.split()).strip(" ,;")
    if not label:
        return DEFAULT_TONE
    if len(label) > MAX_TONE_CHARS or not label.isprintable():
        raise InvalidRequest(f"tone must be at most {MAX_TONE_CHARS} printable characters", field="tone")
    return label.lower() if label.lower() in TONES else label


_GENERIC_QUALITY = ("high detail", "crisp details")


def tone_wording(label: str) -> Tone:
    """A known tone's curated wording; for free text, the known tone names in it bring theirs and every
    other phrase is used as a style descriptor, as given."""
    if label in TONES:
        return TONES[label]
    phrases = [part.strip() for part in re.split(r"[,;]", label) if part.strip()]
    known = [TONES[p.lower()] for p in phrases if p.lower() in TONES]
    free = tuple(p for p in phrases if p.lower() not in TONES)

    def merged(values) -> tuple[str, ...]:
        return tuple(dict.fromkeys(word for words in values for word in words))

    return Tone(
        style=free + merged(t.style for t in known),
        # The caller's own words decide the look: a curated "photorealistic" must not fight "anime".
        graphic_style=free + merged(t.graphic_style or t.style for t in known),
        quality=merged(t.quality for t in known) or _GENERIC_QUALITY,
        lighting=next((t.lighting for t in known if t.lighting), ()),
        camera=bool(known) and not free and all(t.camera for t in known),
        detail_count=min((t.detail_count for t in known), default=3),
    )


def detect_subject(prompt: str) -> str:
    """The kind of picture a prompt describes (a key of ``SUBJECT_KINDS``), or "general"."""
    best, best_hits = "general", 0
    for name, kind in SUBJECT_KINDS.items():
        # Plurals count too: "foxes", "mountains".
        hits = sum(1 for word in kind.keywords
                   if re.search(rf"\b{re.escape(word)}(?:e?s)?\b", prompt, re.IGNORECASE))
        if hits > best_hits:
            best, best_hits = name, hits
    return best


def _descriptors(prompt: str, kind: SubjectKind, tone: Tone) -> list[str]:
    """Candidate descriptors, most important first (trimming drops from the end)."""
    graphic = not kind.photographic or _MENTIONS_ART_MEDIUM.search(prompt) is not None
    lighting: tuple[str, ...] = ()
    if kind.lighting and not _MENTIONS_LIGHTING.search(prompt):  # never fight the user's own lighting
        lighting = tone.lighting or kind.lighting
    style = tone.graphic_style if graphic and tone.graphic_style else tone.style
    quality = tone.graphic_quality if graphic and tone.graphic_quality else tone.quality
    camera: tuple[str, ...] = ()
    if _MENTIONS_CAMERA.search(prompt):  # the user chose the camera: no second lens or film stock
        style = tuple(word for word in style if not _MENTIONS_CAMERA.search(word))
    elif tone.camera and kind.camera and not graphic:
        camera = (kind.camera,)
    return [*kind.composition, *lighting, *style, *camera, *kind.details[:tone.detail_count], *quality]


def enhance_prompt_builtin(prompt: str, tone: str | None = None) -> str:
    """A richer prompt: the user's text first and intact, then fitting descriptors. Offline, deterministic,
    never repeats a descriptor already present (case-insensitive), at most 2000 characters."""
    text = _check_prompt(prompt)
    tone_name = _check_tone(tone)
    if len(text) >= MAX_ENHANCED_CHARS:
        return text  # no room left: the user's words are never cut
    kind = SUBJECT_KINDS.get(detect_subject(text), GENERAL_KIND)
    # After a sentence end or a dangling comma, a space reads better than another comma.
    separator = " " if text[-1] in ".!?,;:" else ", "
    result = text
    added = 0
    for descriptor in _descriptors(text, kind, tone_wording(tone_name)):
        if _contains_phrase(result, descriptor):
            continue
        candidate = f"{result}{separator if added == 0 else ', '}{descriptor}"
        if len(candidate) > MAX_ENHANCED_CHARS:
            break  # keep the most important descriptors, drop the rest
        result, added = candidate, added + 1
    return result


# ---------------------------------------------------------------------------
# Text-model enhancer
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TextModelConfig:
    """Which text model rewrites prompts. "builtin" needs nothing; "openai" needs base_url and model
    (any OpenAI-compatible chat completions server); "transformers" needs local_path (a causal LM folder)."""

    provider: str = "builtin"
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    local_path: str | None = None
    timeout_s: float = 20.0


@dataclass(frozen=True)
class EnhancedPrompt:
    prompt: str
    original: str
    tone: str
    source: str  # "builtin", "openai" or "transformers": what actually wrote ``prompt``
    fallback_reason: str | None = None  # why the configured text model was not used


class TextModelError(Exception):
    """A text model could not produce a usable prompt; the enhancer falls back to the built-in one."""


def system_message(tone: str) -> str:
    style = ", ".join(tone_wording(tone).style)
    return (
        "You rewrite prompts for an AI image generator. Rewrite the user's prompt in a "
        f"{tone} tone ({style}). Keep the subject and every detail the user gave, and add concrete "
        "composition, lighting, style and quality details. Reply with the prompt only: one paragraph, "
        f"no quotes, no explanations, at most {MAX_ENHANCED_CHARS} characters."
    )


def _user_message(prompt: str, tone: str) -> str:
    return f"Tone: {tone}\nPrompt: {prompt}"


_CODE_FENCE = re.compile(r"^```[\w-]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)
_LABEL = re.compile(
    r"^(?:(?:sure|okay|ok)[,!.]?\s*)?(?:here(?:'s| is) (?:the |your |an? )?(?:\w+ )?prompt\b\s*:?"
    r"|(?:\w+ )?prompt\s*:)\s*", re.IGNORECASE)
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`", "«": "»"}


def clean_model_reply(reply: str) -> str:
    """The bare prompt from a chat reply: no code fences, "Prompt:" labels, wrapping quotes or
    trailing explanations; one line, at most 2000 characters (cut at a word boundary)."""
    text = reply.strip()
    fenced = _CODE_FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    text = text.replace("```", "")
    previous = None
    while text != previous:  # labels and quotes can nest: 'Prompt: "..."'
        previous = text
        text = _LABEL.sub("", text).strip()
        if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
            text = text[1:-1].strip()
    text = re.split(r"\n\s*\n", text, maxsplit=1)[0]  # anything after a blank line is commentary
    text = _clean_text(text)
    if len(text) > MAX_ENHANCED_CHARS:
        cut = text[:MAX_ENHANCED_CHARS + 1].rsplit(" ", 1)[0]
        text = cut.rstrip(" ,;:")[:MAX_ENHANCED_CHARS]
    return text


def _is_degenerate(text: str) -> bool:
    """The same few words over and over: what a broken or tiny model writes when it loops."""
    words = re.findall(r"\w+", text.lower())
    return len(words) >= 10 and len(set(words)) < 0.3 * len(words)


# Loaded local models, shared by every enhancer: loading takes seconds, a prompt takes less.
_local_models: dict[str, tuple] = {}
_local_models_lock = threading.Lock()


def _load_local_model(path: str):
    key = str(Path(path).expanduser().resolve())
    with _local_models_lock:
        if key not in _local_models:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(key, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(key, local_files_only=True)
            model.eval()
            _local_models[key] = (tokenizer, model)
        return _local_models[key]


class PromptEnhancer:
    """Enhances prompts with the configured text model, falling back to the built-in enhancer.

    Invalid input (blank prompt, unknown tone) raises ``InvalidRequest`` before any model is called;
    a failing model never raises: the result says ``source="builtin"`` and why in ``fallback_reason``.
    """

    LOCAL_MAX_NEW_TOKENS = 160  # a prompt, not an essay; keeps CPU generation short

    def __init__(self, config: TextModelConfig, http_client: httpx.Client | None = None,
                 resolver=socket.getaddrinfo):
        if config.provider not in PROVIDERS:
            raise InvalidRequest(f"unknown text model provider {config.provider!r}; valid providers: "
                                 f"{', '.join(PROVIDERS)}", field="provider")
        self.config = config
        self._resolver = resolver  # how base_url's host is looked up before every call
        self._owns_http = http_client is None and config.provider == "openai"
        # Made once here, not on first use: one enhancer serves many request threads.
        self._http = httpx.Client(timeout=config.timeout_s) if self._owns_http else http_client

    def close(self) -> None:
        """Close the HTTP client this enhancer made (an injected client belongs to the caller)."""
        if self._owns_http and self._http is not None:
            self._http.close()

    def enhance(self, prompt: str, tone: str | None = None) -> EnhancedPrompt:
        text = _check_prompt(prompt)
        tone_name = _check_tone(tone)
        provider = self.config.provider
        reason = None
        if provider != "builtin":
            if len(text) >= MAX_ENHANCED_CHARS:
                reason = f"prompt already has {MAX_ENHANCED_CHARS} characters or more"
            else:
                try:
                    rewritten = self._ask_model(text, tone_name)
                    return EnhancedPrompt(prompt=rewritten, original=text, tone=tone_name, source=provider)
                except TextModelError as exc:
                    reason = str(exc)
                except Exception as exc:  # a broken model must not break prompt enhancement
                    log.exception("text model %s failed", provider)
                    reason = f"the {provider} text model failed (details in the server log)"
            log.warning("prompt enhancement fell back to the built-in enhancer: %s", reason)
        return EnhancedPrompt(prompt=enhance_prompt_builtin(text, tone_name), original=text, tone=tone_name,
                              source="builtin", fallback_reason=reason)

    def _ask_model(self, prompt: str, tone: str) -> str:
        if self.config.provider == "openai":
            reply = self._ask_openai(prompt, tone)
        else:
            reply = self._ask_local(prompt, tone)
        cleaned = clean_model_reply(reply)
        # Shorter than the user's first word means the model said nothing useful.
        if len(cleaned) < len(prompt.split()[0]):
            raise TextModelError(f"{self.config.provider} text model gave an empty or unusable reply")
        if _is_degenerate(cleaned):
            raise TextModelError(f"{self.config.provider} text model gave a repetitive reply")
        return cleaned

    def _ask_openai(self, prompt: str, tone: str) -> str:
        config = self.config
        if not config.base_url or not config.model:
            raise TextModelError("openai text model needs base_url and model")
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        payload = {
            "model": config.model,
            "messages": [
                {"role": "system", "content": system_message(tone)},
                {"role": "user", "content": _user_message(prompt, tone)},
            ],
        }
        url = f"{config.base_url.rstrip('/')}/chat/completions"
        try:  # the same address rules as every outbound call: never a metadata or link-local address
            check_service_url(url, resolver=self._resolver)
        except InvalidRequest as exc:
            raise TextModelError(f"the text model's base_url is refused: {exc.message}") from exc
        try:
            response = self._http.post(url, json=payload, headers=headers, timeout=config.timeout_s)
        except httpx.HTTPError as exc:
            log.warning("text model request to %s failed: %s", config.base_url, exc)
            raise TextModelError(f"openai text model request failed ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise TextModelError(f"openai text model returned HTTP {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TextModelError("openai text model returned an unexpected response") from exc
        if not isinstance(content, str):
            raise TextModelError("openai text model returned no text")
        return content

    def _ask_local(self, prompt: str, tone: str) -> str:
        import torch

        if not self.config.local_path:
            raise TextModelError("transformers text model needs local_path")
        try:
            tokenizer, model = _load_local_model(self.config.local_path)
        except (OSError, ValueError) as exc:
            log.warning("transformers text model at %s could not be loaded: %s", self.config.local_path, exc)
            raise TextModelError("transformers text model could not be loaded (details in the server log)") from exc
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system_message(tone)},
                        {"role": "user", "content": _user_message(prompt, tone)}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # a plain LM: a completion-style prompt it can continue
            text = f"{system_message(tone)}\n\n{_user_message(prompt, tone)}\nRewritten prompt:"
        inputs = tokenizer(text, return_tensors="pt")
        input_len = inputs["input_ids"].shape[1]
        config = model.config
        max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if max_positions and input_len + self.LOCAL_MAX_NEW_TOKENS > max_positions:
            raise TextModelError("prompt is too long for the transformers text model")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=self.LOCAL_MAX_NEW_TOKENS, do_sample=False,
                                    pad_token_id=pad_id)
        return tokenizer.decode(output[0][input_len:], skip_special_tokens=True)
