"""Secret and e-mail detectors added for the detector-gap issue: labelled and standalone
high-entropy secrets, more vendor key formats, obfuscated e-mails, and the linear-time and
hot-path guarantees that come with them."""

from __future__ import annotations

import base64
import random
import string
import time

import pytest

from guardstream.guardrails import DEFAULT_POLICY, Policy, apply_policy, scan_pii
from guardstream.guardrails.pii import aws_secret_shape_ok, secret_value_ok, shannon_entropy
from guardstream.ops.bench import prompt

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
# Built from pieces so no file in the repository holds a complete vendor-shaped key.
STRIPE_TAIL = "4eC39HqLyjWDarjtT1zdp7dc"
B36 = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"


def found(text: str) -> list[tuple[str, str]]:
    return [(f.kind, f.value) for f in scan_pii(text)]


# --- secrets after a label -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
        (f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
        (f'{{"SecretAccessKey": "{AWS_SECRET}"}}', AWS_SECRET),
        ("password=Xk9#mP2$vL", "Xk9#mP2$vL"),
        ("password: Summer2024!", "Summer2024!"),
        ("my password is Xk9#mP2$vL.", "Xk9#mP2$vL"),
        ('api_key "a8Fk2LmQ9zXw4Rt7"', "a8Fk2LmQ9zXw4Rt7"),
        ("API Key: a8Fk2LmQ9zXw4Rt7", "a8Fk2LmQ9zXw4Rt7"),
        ("x-api-key: a8Fk2LmQ9zXw4Rt7", "a8Fk2LmQ9zXw4Rt7"),
        ("token: 3f9a8b7c6d5e4f3a2b1c3f9a8b7c6d5e", "3f9a8b7c6d5e4f3a2b1c3f9a8b7c6d5e"),
        ("client_secret: 'aBcDeFgHiJkLmNoP'", "aBcDeFgHiJkLmNoP"),
        ("DB_PWD=Tr0ub4dor&3", "Tr0ub4dor&3"),
        ("Server=db;Password=Xk9#mP2$vL;Database=app", "Xk9#mP2$vL"),
    ],
)
def test_labelled_secret_value_is_found(text: str, value: str) -> None:
    assert found(text) == [("SECRET", value)]


@pytest.mark.parametrize(
    "text",
    [
        "password=<your password>",
        "secret: changeme",
        "password: your_password_here",
        "api_key: YOUR_API_KEY",
        "password: ********",
        "token: xxxxxxxxxxxxxxxx",
        "secret = ${SECRET}",
        "api_key = os.getenv('API_KEY')",
        "SECRET_KEY = settings.SECRET_KEY_VALUE",
        "password = getPasswordFromEnvironment()",
        "max_tokens: 4096",
        "token_count = 12345678",
        "token_expiry: 2024-01-01T00:00:00Z",
        "password: hunter2",
        "secret: 'the meeting moved to noon'",
        "password reset link: https://example.com/reset/abc123XYZ",
        "the secret ingredient is cinnamon",
        "the key risks: a8Fk2LmQ9zXw4Rt7",
        "Please pass the salt and the token ring manual.",
        # Code under review: calls and dotted references are not secrets.
        "password_hash = bcrypt.hashpw(pw, salt)",
        "secret_key = os.urandom(24)",
        "token = jwt.encode(payload, key)",
        "let apiKey = process.env.API_KEY2;",
        "password: Optional[str] = None",
    ],
)
def test_labelled_non_secrets_are_not_found(text: str) -> None:
    assert found(text) == []


def test_secret_value_validator() -> None:
    assert secret_value_ok("Xk9#mP2$vL") and secret_value_ok("a8Fk2LmQ9zXw4Rt7")
    assert not secret_value_ok("aaaaaaaaaaaa")  # one character
    assert not secret_value_ok("abababab12")  # too repetitive for its length
    assert not secret_value_ok("Ab1")  # too short
    assert shannon_entropy("") == 0.0 and shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


# --- the standalone AWS secret access key shape ------------------------------------------------


def test_standalone_aws_secret_is_found() -> None:
    text = f"my key is {AWS_SECRET} ok"
    assert found(text) == [("SECRET", AWS_SECRET)]
    assert found(AWS_SECRET) == [("SECRET", AWS_SECRET)]


def test_random_40_character_tokens_are_found() -> None:
    rnd = random.Random(11)
    alphabet = string.ascii_letters + string.digits + "/+"
    tokens = ["".join(rnd.choice(alphabet) for _ in range(40)) for _ in range(500)]
    # The validators trade ~0.1% of uniformly random keys for their false-positive filters.
    assert sum(aws_secret_shape_ok(t) for t in tokens) >= 497
    detected = [t for t in tokens if found(f"use {t} now") == [("SECRET", t)]]
    assert len(detected) >= 497


@pytest.mark.parametrize(
    "text",
    [
        "commit 3f9a8b7c6d5e4f3a2b1c3f9a8b7c6d5e4f3a2b1c is on main",  # git SHA
        "commit 3F9A8B7C6D5E4F3A2B1C3F9A8b7c6d5e4f3a2b1c",  # SHA in mixed case
        "request 123e4567-e89b-12d3-a456-426614174000 failed",  # UUID
        "class ThisIsAVeryLongJavaClassNameForTesting12 extends Base",
        "see src/main/java/com/example/Application123 for details",
        "x " + base64.b64encode(b"The quick brown fox jumps over.").decode()[:40] + " y",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn",  # no digit
        # 41 and 39 characters: not the AWS shape.
        "k " + AWS_SECRET + "Q",
        "k " + AWS_SECRET[:39],
    ],
)
def test_standalone_near_misses_are_not_secrets(text: str) -> None:
    assert "SECRET" not in [k for k, _v in found(text)]


def test_default_policy_blocks_a_standalone_aws_secret() -> None:
    out = apply_policy([("user", f"use {AWS_SECRET} for the upload")], DEFAULT_POLICY)
    assert out.blocked == "PII_BLOCKED"
    assert out.findings == {"SECRET": 1}
    assert AWS_SECRET not in (out.blocked_detail or "")


# --- vendor key formats --------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "AIzaSyA1b2C3d4E5f6G7h8I9j0KkLlMmNnOoPpQ",  # Google API key
        "sk_live_" + STRIPE_TAIL,  # Stripe secret key
        "sk_test_" + STRIPE_TAIL,
        "rk_live_" + STRIPE_TAIL,  # Stripe restricted key
        "whsec_" + STRIPE_TAIL + "AbCd",  # Stripe webhook signing secret
        "glpat-xY3zA9bC2dE5fG8hJ1kL",  # GitLab personal access token
        "npm_" + B36,  # npm access token
        "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",  # Hugging Face token
        "SG." + B36[:22] + "." + (B36 + B36)[:43],  # SendGrid
        "https://hooks.slack.com/services/T0AB12CD3/B0EF45GH6/" + B36[:24],  # Slack webhook
        "xapp-1-A0BC1DE2F3G-" + "1234567890123-" + B36[:20],  # Slack app-level token
        "github_pat_11ABCDEFG0" + (B36 * 3)[:72],  # GitHub fine-grained PAT
        "pypi-AgEIcHlwaS5vcmc" + (B36 * 2)[:60],  # PyPI upload token
    ],
)
def test_vendor_key_formats_are_secrets(secret: str) -> None:
    assert found(f"here: {secret} thanks") == [("SECRET", secret)]


def test_azure_connection_string_key_is_the_secret() -> None:
    key = (B36 * 3)[:86] + "=="
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=x.net"
    assert found(conn) == [("SECRET", key)]
    bus = f"Endpoint=sb://x/;SharedAccessKeyName=root;SharedAccessKey={(B36 * 2)[:43]}="
    assert [k for k, _v in found(bus)] == ["SECRET"]


@pytest.mark.parametrize(
    "text",
    [
        "from huggingface_hub import hf_hub_download",
        "hf_abcdefghijklmnopqrstuvwxyzabcdefgh",  # one case: a mask or an identifier
        "def test_sk_live_mode(): pass",
        "npm_config_cache is an environment variable",
        "use SG.a.b for the placeholder",
        "AIza is how Google keys start",
    ],
)
def test_vendor_near_misses_are_not_secrets(text: str) -> None:
    assert found(text) == []


# --- obfuscated e-mail addresses -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("mail jane [at] example [dot] org now", "jane [at] example [dot] org"),
        ("mail jane (at) example (dot) org", "jane (at) example (dot) org"),
        ("mail jane{at}example{dot}org", "jane{at}example{dot}org"),
        ("MAIL JANE [AT] EXAMPLE [DOT] ORG", "JANE [AT] EXAMPLE [DOT] ORG"),
        ("mail jane [at] example.org", "jane [at] example.org"),
        ("mail jane@example[dot]co.uk please", "jane@example[dot]co.uk"),
        (
            "mail jane [ at ] mail [ dot ] example [ dot ] org",
            "jane [ at ] mail [ dot ] example [ dot ] org",
        ),
        ("mail jane at example [dot] org", "jane at example [dot] org"),
        ("mail jane [dot] doe [at] example [dot] org", "jane [dot] doe [at] example [dot] org"),
    ],
)
def test_obfuscated_email_is_found_whole(text: str, address: str) -> None:
    assert found(text) == [("EMAIL", address)]


@pytest.mark.parametrize(
    "text",
    [
        "meet me at the cafe dot com",
        "name at domain dot com",  # bare words: deliberately not an address
        "look at [this] and the dot",
        "the [dot] product ships at noon",
        "we met at (the) office",
    ],
)
def test_prose_with_at_and_dot_is_not_an_email(text: str) -> None:
    assert found(text) == []


def test_redaction_removes_the_whole_obfuscated_email() -> None:
    out = apply_policy([("user", "write to jane [at] example [dot] org today")], DEFAULT_POLICY)
    assert out.blocked is None and out.findings == {"EMAIL": 1}
    assert out.messages == (("user", "write to [EMAIL_1] today"),)


# --- redaction and determinism ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"aws_secret_access_key = {AWS_SECRET}",
        f"use {AWS_SECRET} now",
        "password: Summer2024!",
        "key sk_live_" + STRIPE_TAIL,
        "hook https://hooks.slack.com/services/T0AB12CD3/B0EF45GH6/" + B36[:24],
    ],
)
def test_redaction_removes_the_whole_secret(text: str) -> None:
    [finding] = scan_pii(text)
    out = apply_policy([("user", text)], Policy(secret="redact"))
    content = out.messages[0][1]
    assert out.blocked is None and "[SECRET_1]" in content
    assert finding.value not in content
    assert content == text[: finding.start] + "[SECRET_1]" + text[finding.end :]


def test_output_is_deterministic() -> None:
    text = (
        f"a {AWS_SECRET} b password: Summer2024! c jane [at] example [dot] org d "
        "mail john.doe@example.com card 4111 1111 1111 1111 key sk_live_" + STRIPE_TAIL
    )
    first = scan_pii(text)
    assert all(scan_pii(text) == first for _ in range(5))
    assert [f.start for f in first] == sorted(f.start for f in first)
    assert [f.kind for f in first] == ["SECRET", "SECRET", "EMAIL", "EMAIL", "CARD", "SECRET"]


def test_ordinary_prompts_have_no_findings() -> None:
    rnd = random.Random(5)
    for _ in range(50):
        assert scan_pii(prompt(rnd, 1000, False)) == []


# --- linear time -----------------------------------------------------------------------------

_HOSTILE_UNITS = [
    "a [at] ",
    "[dot] ",
    "a[at]b[dot]",
    "x" * 61 + "[dot]",
    "secret=",
    "secret: x ",
    "password is ",
    "api_key ",
    'token "',
    "eyJ-",
    "eyJabcde.",
    "Bearer ",
    "-----BEGIN PRIVATE KEY-----",
    "sk_live_",
    "(at)",
    "x) ",
    "that) ",
    "[at",
    "a@b.c.",
    "x@y [at] z [dot] c secret=Ab1 ",
]


def _hostile(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _base64_run(size: int) -> str:
    rnd = random.Random(3)
    return "".join(rnd.choice(string.ascii_letters + string.digits + "/+") for _ in range(size))


def _fastest(text: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        scan_pii(text)
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.parametrize("unit", [*_HOSTILE_UNITS, "<base64 run>", "<40-char tokens>"])
def test_hostile_text_is_scanned_in_linear_time(unit: str) -> None:
    def make(size: int) -> str:
        if unit == "<base64 run>":
            return _base64_run(size)
        if unit == "<40-char tokens>":
            # Thousands of findings: resolving overlaps must not be quadratic either.
            return _hostile(_base64_run(40) + " ", size)
        return _hostile(unit, size)

    small, large = _fastest(make(50_000)), _fastest(make(200_000))
    # 4x the text: linear work gives ~4x the time, quadratic ~16x.
    assert large < 8 * small + 0.005, f"{small * 1e3:.1f} ms → {large * 1e3:.1f} ms"
    assert large < 2.0, f"{large:.2f} s for 200 KB"
