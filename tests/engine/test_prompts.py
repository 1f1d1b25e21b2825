"""Prompt builder, built-in enhancer and text-model enhancers (mocked HTTP, a tiny local GPT-2)."""

import json
import socket

import httpx
import pytest

from engine.errors import InvalidRequest
from engine.tools.prompts import (
    MAX_ENHANCED_CHARS,
    TONES,
    EnhancedPrompt,
    PromptEnhancer,
    TextModelConfig,
    build_prompt,
    clean_model_reply,
    detect_subject,
    enhance_prompt_builtin,
)


def added_part(prompt: str, enhanced: str) -> list[str]:
    """The descriptors the enhancer appended after the user's prompt."""
    assert enhanced.startswith(prompt)
    return [part.strip() for part in enhanced[len(prompt):].lstrip(" ,").split(",") if part.strip()]


# --- build_prompt -----------------------------------------------------------------------------------

def test_build_prompt_joins_all_fields():
    prompt = build_prompt(subject=" a red   fox ", setting="a snowy birch forest", mood="serene",
                          art_style="watercolor painting", lighting="soft golden hour light", camera="85mm lens",
                          extras=["highly detailed", "muted palette"])
    assert prompt == ("a red fox, in a snowy birch forest, serene mood, watercolor painting, soft golden hour light, "
                      "shot on 85mm lens, highly detailed, muted palette")


def test_build_prompt_single_field():
    assert build_prompt(subject="a lighthouse") == "a lighthouse"
    assert build_prompt(extras="film grain") == "film grain"


def test_build_prompt_does_not_repeat_connecting_words():
    prompt = build_prompt(subject="a city", setting="under a bridge", mood="dark moody atmosphere",
                          art_style="anime", lighting="neon lighting", camera="shot on 35mm film")
    assert prompt == "a city, under a bridge, dark moody atmosphere, anime style, neon lighting, shot on 35mm film"
    assert build_prompt(lighting="candlelit") == "candlelit"
    assert build_prompt(lighting="soft warm") == "soft warm lighting"
    assert build_prompt(mood="calm mood") == "calm mood"
    assert build_prompt(camera="low angle close-up") == "low angle close-up"  # an angle, not equipment


def test_build_prompt_cleans_commas_and_spaces():
    prompt = build_prompt(subject="a cat,, ", extras=" , sharp ,, focus , ", art_style="  ")
    assert prompt == "a cat, sharp, focus"
    assert build_prompt(extras=["", "  ", "bokeh", "Bokeh"]) == "bokeh"


def test_build_prompt_needs_a_field():
    with pytest.raises(InvalidRequest) as err:
        build_prompt()
    assert err.value.field == "subject"
    assert err.value.message == ("at least one of subject, setting, mood, art_style, lighting, camera, extras "
                                 "is required")
    with pytest.raises(InvalidRequest):
        build_prompt(subject="   ", extras=[" "])


@pytest.mark.parametrize("field", ["subject", "setting", "mood", "art_style", "lighting", "camera", "extras"])
def test_build_prompt_field_too_long(field):
    with pytest.raises(InvalidRequest) as err:
        build_prompt(**{field: "x" * 501})
    assert err.value.field == field
    assert build_prompt(**{field: "x" * 500})  # the limit itself is fine


def test_build_prompt_rejects_non_text():
    with pytest.raises(InvalidRequest) as err:
        build_prompt(extras=["ok", 3])
    assert err.value.field == "extras"
    with pytest.raises(InvalidRequest) as err:
        build_prompt(subject=42)
    assert err.value.field == "subject"


# --- built-in enhancer ------------------------------------------------------------------------------

def test_builtin_enhancer_is_richer_and_keeps_the_prompt_first():
    prompt = "portrait of an old fisherman"
    enhanced = enhance_prompt_builtin(prompt)
    assert enhanced.startswith(prompt + ", ")
    assert len(enhanced) > 2 * len(prompt)
    assert "shallow depth of field" in enhanced and "photorealistic" in enhanced
    assert len(added_part(prompt, enhanced)) >= 8


def test_subject_kinds_get_their_own_descriptors():
    prompts = {"portrait": "portrait of a young woman", "landscape": "a misty mountain lake",
               "product": "a perfume bottle", "food": "a bowl of ramen", "logo": "a logo for a coffee brand",
               "animal": "a fox in the snow", "vehicle": "a vintage motorcycle", "interior": "a cozy living room",
               "architecture": "a gothic cathedral", "abstract": "abstract fractal swirls"}
    added = {}
    for kind, prompt in prompts.items():
        assert detect_subject(prompt) == kind
        added[kind] = set(added_part(prompt, enhance_prompt_builtin(prompt)))
    assert "detailed skin texture" in added["portrait"]
    assert "sweeping wide vista" in added["landscape"]
    assert "softbox studio lighting" in added["product"]
    assert "flat vector shapes" in added["logo"]
    assert "photorealistic" not in added["logo"]  # graphic work gets no photo words
    assert added["portrait"] != added["landscape"] != added["product"] != added["portrait"]
    assert detect_subject("a thing") == "general"


def test_tone_changes_the_output():
    prompt = "a lighthouse on a cliff"
    outputs = {tone: enhance_prompt_builtin(prompt, tone) for tone in TONES}
    assert len(set(outputs.values())) == len(TONES)
    assert enhance_prompt_builtin(prompt) == outputs["photographic"]  # the default tone
    assert enhance_prompt_builtin(prompt, " Cinematic ") == outputs["cinematic"]
    assert "cinematic film still" in outputs["cinematic"]
    assert "whimsical storybook style" in outputs["whimsical"]
    assert len(outputs["minimal"]) < len(outputs["photographic"])


def test_no_duplicated_descriptors():
    prompt = "Portrait of a man, Shallow Depth of Field, SHARP FOCUS, photorealistic"
    enhanced = enhance_prompt_builtin(prompt)
    lowered = enhanced.lower()
    for phrase in ("shallow depth of field", "sharp focus", "photorealistic"):
        assert lowered.count(phrase) == 1
    for tone in TONES:
        parts = [part.lower() for part in added_part(prompt, enhance_prompt_builtin(prompt, tone))]
        assert len(parts) == len(set(parts))


def test_user_lighting_and_camera_are_respected():
    prompt = "portrait of a man, neon lighting, 50mm lens"
    added = added_part(prompt, enhance_prompt_builtin(prompt))
    assert not any("light" in part for part in added)
    assert not any("lens" in part for part in added)
    painting = "watercolor painting of a fox"
    added = added_part(painting, enhance_prompt_builtin(painting))
    assert "photorealistic" not in added and not any("lens" in part for part in added)


def test_builtin_enhancer_is_deterministic():
    prompt = "a red sports car on a coastal road"
    assert enhance_prompt_builtin(prompt, "dramatic") == enhance_prompt_builtin(prompt, "dramatic")


def test_sentence_ending_prompt_stays_intact():
    enhanced = enhance_prompt_builtin("  A cat sleeping on a windowsill.  ")
    assert enhanced.startswith("A cat sleeping on a windowsill. ")
    assert "., " not in enhanced


def test_builtin_enhancer_stays_within_the_limit():
    long_prompt = "a cat " * 330 + "sitting"  # 1987 chars: room for a descriptor or two at most
    enhanced = enhance_prompt_builtin(long_prompt)
    assert enhanced.startswith(long_prompt) and len(enhanced) <= MAX_ENHANCED_CHARS
    at_limit = "b" * MAX_ENHANCED_CHARS
    assert enhance_prompt_builtin(at_limit) == at_limit
    huge = "c" * 10_000
    assert enhance_prompt_builtin(huge) == huge


@pytest.mark.parametrize("prompt", ["", "   \n", "x" * 10_001, None])
def test_invalid_prompt(prompt):
    with pytest.raises(InvalidRequest) as err:
        enhance_prompt_builtin(prompt)
    assert err.value.field == "prompt"


def test_free_text_tones_steer_the_builtin_enhancer():
    cozy = enhance_prompt_builtin("robot reading a book", "anime, cozy")
    assert cozy.startswith("robot reading a book, ") and "anime" in cozy and "cozy" in cozy
    assert "photorealistic" not in cozy and "50mm lens" not in cozy  # the caller's words decide the look
    assert enhance_prompt_builtin("a cat", " Cinematic ") == enhance_prompt_builtin("a cat", "cinematic")
    # Known tone names inside free text bring their curated wording.
    mixed = enhance_prompt_builtin("a castle", "dark, watercolor")
    assert "watercolor" in mixed and "gothic undertones" in mixed
    assert enhance_prompt_builtin("a cat", "") == enhance_prompt_builtin("a cat")  # blank: the default tone


def test_invalid_tone():
    for tone in ("x" * 101, "bell\x07", 42):
        with pytest.raises(InvalidRequest) as err:
            enhance_prompt_builtin("a cat", tone)
        assert err.value.field == "tone"


# --- PromptEnhancer: builtin and OpenAI-compatible -----------------------------------------------

def test_builtin_provider():
    result = PromptEnhancer(TextModelConfig()).enhance(" a perfume bottle ", "professional")
    assert result == EnhancedPrompt(prompt=enhance_prompt_builtin("a perfume bottle", "professional"),
                                    original="a perfume bottle", tone="professional", source="builtin",
                                    fallback_reason=None)


def test_unknown_provider():
    with pytest.raises(InvalidRequest) as err:
        PromptEnhancer(TextModelConfig(provider="magic"))
    assert err.value.field == "provider"


def lan_resolver(address: str = "10.0.0.5"):
    """llm.local, as a LAN's DNS would answer for it."""
    return lambda host, port, *_args: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


def openai_enhancer(handler, api_key: str | None = "sk-test", base_url: str = "http://llm.local/v1/",
                    resolver=None) -> PromptEnhancer:
    config = TextModelConfig(provider="openai", base_url=base_url, api_key=api_key,
                             model="tiny-chat", timeout_s=3)
    return PromptEnhancer(config, http_client=httpx.Client(transport=httpx.MockTransport(handler)),
                          resolver=resolver or lan_resolver())


@pytest.mark.parametrize(("base_url", "address"), [("http://metadata.example/v1", "169.254.169.254"),
                                                   ("http://llm.local/v1", "fe80::1"),
                                                   ("http://[fd00:ec2::254]/v1", None),
                                                   ("http://user:pw@llm.local/v1", None)])
def test_a_text_model_base_url_never_reaches_metadata_addresses(base_url, address):
    calls = []

    def handler(request):
        calls.append(request)
        return reply_with("never")

    resolver = lan_resolver(address) if address else None
    result = openai_enhancer(handler, base_url=base_url, resolver=resolver).enhance("a fox", "cinematic")
    assert result.source == "builtin" and "base_url is refused" in result.fallback_reason and calls == []


def test_a_text_model_on_the_lan_or_this_box_is_fine():
    for address in ("10.0.0.5", "127.0.0.1", "192.168.1.20"):
        result = openai_enhancer(lambda r: reply_with("a fox, golden hour"),
                                 resolver=lan_resolver(address)).enhance("a fox", "cinematic")
        assert result.source == "openai"


def test_a_failing_text_model_does_not_leak_its_error_text():
    def handler(request):
        raise httpx.ConnectError("connect to 10.9.8.7:5000 failed: secret-internal-host")

    result = openai_enhancer(handler).enhance("a fox", "cinematic")
    assert result.source == "builtin" and "10.9.8.7" not in result.fallback_reason
    assert "secret-internal-host" not in result.fallback_reason


def reply_with(content) -> httpx.Response:
    return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": content}}]})


def test_openai_request_shape_and_cleaned_reply():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply_with('```\nPrompt: "a red fox in fresh snow, golden hour, 85mm"\n```')

    result = openai_enhancer(handler).enhance("a red fox", "cinematic")
    assert result == EnhancedPrompt(prompt="a red fox in fresh snow, golden hour, 85mm", original="a red fox",
                                    tone="cinematic", source="openai", fallback_reason=None)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://llm.local/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    body = json.loads(request.content)
    assert body["model"] == "tiny-chat"
    system, user = body["messages"]
    assert system["role"] == "system" and "cinematic" in system["content"]
    assert "prompt only" in system["content"]
    assert user["role"] == "user" and "a red fox" in user["content"] and "cinematic" in user["content"]


def test_openai_without_api_key_sends_no_authorization():
    seen = []

    def handler(request):
        seen.append(request)
        return reply_with("a quiet harbor at dawn, soft mist")

    assert openai_enhancer(handler, api_key=None).enhance("a harbor").source == "openai"
    assert "Authorization" not in seen[0].headers


def _server_error(request):
    return httpx.Response(500, json={"error": "boom"})


def _timeout(request):
    raise httpx.ConnectTimeout("timed out", request=request)


def _bad_json(request):
    return httpx.Response(200, content=b"<html>not json</html>")


def _wrong_shape(request):
    return httpx.Response(200, json={"data": []})


def _empty_reply(request):
    return reply_with("  ``` ```  ")


@pytest.mark.parametrize("handler, reason", [
    (_server_error, "HTTP 500"), (_timeout, "ConnectTimeout"), (_bad_json, "unexpected response"),
    (_wrong_shape, "unexpected response"), (_empty_reply, "unusable reply"),
])
def test_openai_failures_fall_back_to_builtin(handler, reason):
    result = openai_enhancer(handler).enhance("a mountain village", "vintage")
    assert result.source == "builtin"
    assert reason in result.fallback_reason
    assert result.prompt == enhance_prompt_builtin("a mountain village", "vintage")
    assert result.original == "a mountain village" and result.tone == "vintage"


def test_openai_missing_settings_fall_back():
    result = PromptEnhancer(TextModelConfig(provider="openai")).enhance("a cat")
    assert result.source == "builtin" and "base_url" in result.fallback_reason


def test_invalid_input_is_rejected_before_calling_the_model():
    calls = []

    def handler(request):
        calls.append(request)
        return reply_with("never used")

    enhancer = openai_enhancer(handler)
    with pytest.raises(InvalidRequest) as err:
        enhancer.enhance("a cat", "angry\n" * 30)
    assert err.value.field == "tone"
    with pytest.raises(InvalidRequest) as err:
        enhancer.enhance("   ")
    assert err.value.field == "prompt"
    long_prompt = "d" * MAX_ENHANCED_CHARS  # no room to enhance: returned as is, model not asked
    result = enhancer.enhance(long_prompt)
    assert result.prompt == long_prompt and result.source == "builtin" and result.fallback_reason
    assert calls == []


@pytest.mark.parametrize("reply, expected", [
    ("  a red fox  ", "a red fox"),
    ('"a red fox"', "a red fox"),
    ("“a red fox”", "a red fox"),
    ("Prompt: a red fox", "a red fox"),
    ("Enhanced prompt: 'a red fox'", "a red fox"),
    ("Here's the enhanced prompt:\n\na red fox,\n  snowy forest\n\nThis adds atmosphere.", "a red fox, snowy forest"),
    ("```text\na red fox\n```", "a red fox"),
    ("", ""),
])
def test_clean_model_reply(reply, expected):
    assert clean_model_reply(reply) == expected


def test_repetitive_reply_falls_back():
    result = openai_enhancer(lambda request: reply_with("soft " * 40 + "tone " * 40)).enhance("a fox")
    assert result.source == "builtin" and "repetitive" in result.fallback_reason


def test_clean_model_reply_caps_length_at_a_word():
    cleaned = clean_model_reply("word " * 1000)
    assert len(cleaned) <= MAX_ENHANCED_CHARS and cleaned.endswith("word")


# --- PromptEnhancer: local transformers model -----------------------------------------------------

WORDS = ("a the of in on with and red fox cat snowy forest soft light golden hour portrait lens photo "
         "detailed sharp focus misty mountain lake tone prompt rewritten cinematic photographic").split()


def _save_tiny_gpt2(folder, n_positions: int) -> str:
    """A random 1-layer GPT-2 and a word-level tokenizer built in code: nothing is downloaded."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    specials = ["[UNK]", "[PAD]", "[EOS]"]
    vocab = {token: index for index, token in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="[EOS]")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=len(vocab), n_positions=n_positions,
                        bos_token_id=vocab["[EOS]"], eos_token_id=vocab["[EOS]"], pad_token_id=vocab["[PAD]"])
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> str:
    return _save_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), n_positions=512)


def local_enhancer(path: str) -> PromptEnhancer:
    enhancer = PromptEnhancer(TextModelConfig(provider="transformers", local_path=path))
    enhancer.LOCAL_MAX_NEW_TOKENS = 12  # keeps CPU generation in the test short
    return enhancer


def test_transformers_provider_loads_local_model(tiny_lm):
    result = local_enhancer(tiny_lm).enhance("a red fox in a snowy forest", "cinematic")
    assert isinstance(result, EnhancedPrompt)
    assert result.original == "a red fox in a snowy forest" and result.tone == "cinematic"
    assert 0 < len(result.prompt) <= MAX_ENHANCED_CHARS
    # Random weights write garbage: either a cleaned string or a reported fallback is fine.
    assert result.source in ("transformers", "builtin")
    assert (result.fallback_reason is None) == (result.source == "transformers")
    # Cached: a second enhancer reuses the loaded model and, greedy, repeats the same output.
    assert local_enhancer(tiny_lm).enhance("a red fox in a snowy forest", "cinematic") == result


def test_transformers_prompt_too_long_for_the_model_falls_back(tmp_path):
    short_context = _save_tiny_gpt2(tmp_path / "short", n_positions=32)
    result = local_enhancer(short_context).enhance("a cat")
    assert result.source == "builtin" and "too long" in result.fallback_reason


def test_transformers_missing_folder_falls_back(tmp_path):
    config = TextModelConfig(provider="transformers", local_path=str(tmp_path / "nothing-here"))
    result = PromptEnhancer(config).enhance("a cat")
    assert result.source == "builtin" and result.fallback_reason
    assert PromptEnhancer(TextModelConfig(provider="transformers")).enhance("a cat").fallback_reason
