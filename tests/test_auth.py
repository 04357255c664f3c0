"""Token checks of the functions (`shared.auth`), offline, through firebase-admin's real path.

Each test makes a throwaway RSA key and a self-signed certificate, and `requests-mock` serves
`{kid: certificate}` at Google's certificate URL
(https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com).
That mock stands for Google's endpoint, which this machine cannot reach; everything after the
download (decoding, `kid` lookup, RS256 signature, `iat`/`exp`, audience, issuer) is
firebase-admin's and google-auth's own code. Calls to the Identity Toolkit API (revocation
checks) are served the same way, and the App Check keys (fetched by PyJWT with urllib, not
requests) through a stand-in for `urllib.request.urlopen`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import json
import time
import urllib.request
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared import auth
from shared.auth import Principal, authenticate, check_app_check
from shared.errors import AppError, ConfigError
from shared.http import status_of
from shared.settings import Settings

CERT_URL = ("https://www.googleapis.com/robot/v1/metadata/x509/"
            "securetoken@system.gserviceaccount.com")
APP_CHECK_JWKS_URL = "https://firebaseappcheck.googleapis.com/v1/jwks"
PROJECT = "dash-prod-test"
PROJECT_NUMBER = "123456789012"
ISSUER = f"https://securetoken.google.com/{PROJECT}"
KID = "test-key-1"
REMOVE = object()


# --- keys, certificates and tokens -----------------------------------------------------------

def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _self_signed_pem(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    """The stand-in for Google's signing key (made here, thrown away after the module)."""
    return _new_key()


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    """A key Google never published."""
    return _new_key()


@pytest.fixture
def google_certs(requests_mock, key):
    """Google's certificate endpoint (unreachable here) served by requests-mock."""
    return requests_mock.get(CERT_URL, json={KID: _self_signed_pem(key)})


@pytest.fixture(autouse=True)
def fresh_firebase(monkeypatch):
    """No auth emulator unless a test sets one; a fresh firebase-admin app per test."""
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    auth.reset_firebase_apps()
    yield
    auth.reset_firebase_apps()


def settings_for(project: str = PROJECT, **env: str) -> Settings:
    """Settings of a function instance of `project`, with extra variables."""
    return Settings.from_env({"GOOGLE_CLOUD_PROJECT": project,
                              "SNAPSHOT_BUCKET": "dash-snapshots", **env})


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a real Firebase ID token of alice, changed by `overrides` (REMOVE drops)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER, "aud": PROJECT, "sub": "uid-alice", "user_id": "uid-alice",
        "iat": now - 10, "exp": now + 3600, "auth_time": now - 60,
        "email": "alice@example.com", "email_verified": True,
        "firebase": {"identities": {"email": ["alice@example.com"]},
                     "sign_in_provider": "password"},
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not REMOVE}


def sign(payload: dict[str, Any], key: rsa.RSAPrivateKey, *, kid: str | None = KID,
         alg: str = "RS256") -> str:
    """A JWT signed by `key` with PyJWT."""
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """An `alg: none` JWT (what the auth emulator hands out)."""
    return f"{_b64(header or {'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."


def bearer(token: str) -> dict[str, str]:
    """Request headers carrying `token`."""
    return {"Authorization": f"Bearer {token}"}


def refusal(headers: dict[str, str], settings: Settings | None = None, *,
            require_admin: bool = True, **kwargs: Any) -> AppError:
    """The error `authenticate` raises for these headers."""
    with pytest.raises(AppError) as caught:
        authenticate(headers, settings or settings_for(), require_admin=require_admin, **kwargs)
    return caught.value


# --- good tokens ---------------------------------------------------------------------------------

def test_admin_token_gives_a_typed_principal(google_certs, key):
    principal = authenticate(bearer(sign(claims(admin=True), key)), settings_for(),
                             require_admin=True)
    assert principal == Principal(uid="uid-alice", email="alice@example.com", admin=True)
    assert principal.claims["admin"] is True and principal.claims["aud"] == PROJECT
    assert principal.emulated is False and principal.app_id is None
    assert google_certs.called and google_certs.last_request.url == CERT_URL


def test_valid_token_without_admin_claim_is_forbidden(google_certs, key):
    error = refusal(bearer(sign(claims(), key)))
    assert (status_of(error), error.code) == (403, "not_admin")


def test_valid_token_without_admin_claim_passes_where_admin_is_not_required(google_certs, key):
    principal = authenticate(bearer(sign(claims(), key)), settings_for(), require_admin=False)
    assert principal.uid == "uid-alice" and principal.admin is False


@pytest.mark.parametrize("admin_claim", ["true", 1, "yes", {"admin": True}, [True]])
def test_only_a_boolean_true_admin_claim_counts(google_certs, key, admin_claim):
    error = refusal(bearer(sign(claims(admin=admin_claim), key)))
    assert (status_of(error), error.code) == (403, "not_admin")


def test_lowercase_bearer_scheme_and_spaces_are_accepted(google_certs, key):
    token = sign(claims(admin=True), key)
    principal = authenticate({"Authorization": f"  bearer   {token} "}, settings_for(),
                             require_admin=True)
    assert principal.admin


# --- refused tokens: 401 with a distinct code each ---------------------------------------------

def _expired(key, other_key):
    now = int(time.time())
    return sign(claims(iat=now - 7200, exp=now - 3600, auth_time=now - 7300), key)


def _not_yet_valid(key, other_key):
    now = int(time.time())
    return sign(claims(iat=now + 600, exp=now + 4200), key)


def _wrong_audience(key, other_key):
    return sign(claims(aud="another-project"), key)


def _wrong_issuer(key, other_key):
    return sign(claims(iss="https://securetoken.google.com/another-project"), key)


def _google_oauth_issuer(key, other_key):
    return sign(claims(iss="https://accounts.google.com"), key)


def _wrong_kid(key, other_key):
    return sign(claims(admin=True), key, kid="not-a-google-key")


def _no_kid(key, other_key):
    return sign(claims(admin=True), key, kid=None)


def _signed_by_another_key(key, other_key):
    return sign(claims(admin=True), other_key)


def _alg_none(key, other_key):
    return unsigned(claims(admin=True), {"alg": "none", "typ": "JWT", "kid": KID})


def _hs256_with_the_public_certificate(key, other_key):
    # The classic key-confusion forgery: HMAC keyed with the public certificate (PyJWT refuses
    # to make one, so it is built by hand).
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': KID})}.{_b64(claims(admin=True))}"
    mac = hmac.new(_self_signed_pem(key).encode(), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{base64.urlsafe_b64encode(mac.digest()).rstrip(b'=').decode()}"


def _tampered_payload(key, other_key):
    header, _, signature = sign(claims(), key).split(".")
    return f"{header}.{_b64(claims(admin=True))}.{signature}"


def _no_subject(key, other_key):
    return sign(claims(sub=REMOVE, admin=True), key)


def _auth_time_in_the_future(key, other_key):
    return sign(claims(auth_time=int(time.time()) + 600, admin=True), key)


def _no_auth_time(key, other_key):
    return sign(claims(auth_time=REMOVE, admin=True), key)


def _custom_token_audience(key, other_key):
    aud = "https://identitytoolkit.googleapis.com/google.identity.identitytoolkit.v1.IdentityToolkit"
    return sign(claims(aud=aud, admin=True), key)


REFUSED_TOKENS = {
    "expired": (_expired, "expired_token"),
    "not yet valid (iat in the future)": (_not_yet_valid, "token_not_yet_valid"),
    "wrong aud": (_wrong_audience, "wrong_audience"),
    "custom token aud": (_custom_token_audience, "wrong_audience"),
    "wrong iss": (_wrong_issuer, "wrong_issuer"),
    "Google OAuth iss": (_google_oauth_issuer, "wrong_issuer"),
    "wrong kid": (_wrong_kid, "unknown_key"),
    "no kid": (_no_kid, "unknown_key"),
    "signed by another key": (_signed_by_another_key, "invalid_signature"),
    "alg none": (_alg_none, "unsupported_algorithm"),
    "HS256 keyed with the certificate": (_hs256_with_the_public_certificate,
                                         "unsupported_algorithm"),
    "tampered payload": (_tampered_payload, "invalid_signature"),
    "no sub": (_no_subject, "invalid_token"),
    "auth_time in the future": (_auth_time_in_the_future, "invalid_token"),
    "no auth_time": (_no_auth_time, "invalid_token"),
}


@pytest.mark.parametrize("case", list(REFUSED_TOKENS))
def test_refused_tokens_get_401_with_their_code(google_certs, key, other_key, case):
    make, code = REFUSED_TOKENS[case]
    error = refusal(bearer(make(key, other_key)))
    assert (status_of(error), error.code) == (401, code)
    assert "Traceback" not in error.message and "firebase" not in error.message.lower()


def test_refusal_codes_are_distinct_per_cause(google_certs, key, other_key):
    seen = {}
    for case in ("expired", "not yet valid (iat in the future)", "wrong aud", "wrong iss",
                 "wrong kid", "alg none", "tampered payload"):
        make, _ = REFUSED_TOKENS[case]
        seen[case] = refusal(bearer(make(key, other_key))).code
    seen["missing"] = refusal({}).code
    seen["malformed"] = refusal({"Authorization": "Bearer not-a-jwt"}).code
    seen["not admin"] = refusal(bearer(sign(claims(), key))).code
    assert len(set(seen.values())) == len(seen), seen


MALFORMED_HEADERS = {
    "Basic scheme": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "scheme only": {"Authorization": "Bearer"},
    "scheme and spaces": {"Authorization": "Bearer    "},
    "two parts": {"Authorization": "Bearer abc.def"},
    "four parts": {"Authorization": "Bearer a.b.c.d"},
    "not base64url": {"Authorization": "Bearer a$b.c%d.e"},
    "segments not JSON": {"Authorization": "Bearer YWJj.ZGVm.c2ln"},
    "header a JSON array": {"Authorization": f"Bearer W10.{_b64({'sub': 'x'})}.c2ln"},
    "payload a JSON string": {"Authorization": f"Bearer {_b64({'alg': 'RS256'})}.ImFiYyI.c2ln"},
    "invalid UTF-8": {"Authorization": "Bearer _-8.__8.c2ln"},
    "too long": {"Authorization": "Bearer " + "a" * 5000 + "." + "b" * 5000 + ".c"},
    "control characters": {"Authorization": "Bearer a\x00b.c\x07d.e"},
    "unicode": {"Authorization": "Bearer ä.ö.ü"},
    "deeply nested payload": {"Authorization": f"Bearer {_b64({'alg': 'RS256', 'kid': KID})}."
                              + base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000)
                              .rstrip(b"=").decode() + ".c2ln"},
    "deeply nested header": {"Authorization": "Bearer "
                             + base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000)
                             .rstrip(b"=").decode() + f".{_b64({'sub': 'x'})}.c2ln"},
}


ODD_VALUES = [None, True, False, 0, -1, 1.5, 1e308, -1e308, 2**70, "", "x" * 300, "0", "true",
              [], ["x"], {}, {"admin": True}, "\u202e\u0000", "' OR 1=1 --", "../../etc/passwd",
              "${jndi:ldap://x}", "<script>", "__proto__"]


def test_odd_claim_and_header_values_are_always_4xx(google_certs, key):
    """Signed (and unsigned) tokens whose claims or header fields have every odd type: each
    ends as a 401 or 403 AppError, never another exception (which would be a 500)."""
    import random

    rng = random.Random(5)  # noqa: S311 - a reproducible corpus, not a secret
    names = ["iss", "aud", "sub", "iat", "exp", "auth_time", "admin", "email", "firebase"]
    tried = 0
    for _ in range(400):
        payload = claims(admin=True)
        for name in rng.sample(names, rng.randint(1, 3)):
            payload[name] = rng.choice(ODD_VALUES)
        if rng.random() < 0.2:
            header = {"alg": rng.choice(["RS256", "none", None, 1, ["RS256"]]),
                      "kid": rng.choice([KID, None, 1, [KID], {}, "x" * 200])}
            token = f"{_b64(header)}.{_b64(payload)}.{rng.choice(['', 'c2ln', 'AAAA'])}"
        else:
            token = jwt.api_jws.encode(json.dumps(payload).encode(), key, algorithm="RS256",
                                       headers={"kid": KID})
        try:
            principal = authenticate(bearer(token), settings_for(), require_admin=True)
        except AppError as exc:
            assert status_of(exc) in (401, 403), (payload, exc.code)
        else:
            assert principal.admin and principal.claims["admin"] is True
        tried += 1
    assert tried == 400


def test_missing_header_is_401_missing_token():
    for headers in ({}, {"Authorization": ""}, {"Authorization": "   "}):
        error = refusal(headers)
        assert (status_of(error), error.code) == (401, "missing_token")


@pytest.mark.parametrize("case", list(MALFORMED_HEADERS))
def test_malformed_header_is_401_malformed_token(requests_mock, case):
    error = refusal(MALFORMED_HEADERS[case])
    assert (status_of(error), error.code) == (401, "malformed_token")
    assert not requests_mock.called


def test_unreachable_certificates_are_503_not_401(requests_mock, key):
    requests_mock.get(CERT_URL, status_code=500, text="backend error")
    error = refusal(bearer(sign(claims(admin=True), key)))
    assert status_of(error) == 503


def test_certificate_endpoint_timeout_is_503(requests_mock, key):
    import requests

    requests_mock.get(CERT_URL, exc=requests.exceptions.ConnectTimeout)
    error = refusal(bearer(sign(claims(admin=True), key)))
    assert status_of(error) == 503


def test_rotated_keys_are_picked_up_from_the_endpoint(requests_mock, key, other_key):
    requests_mock.get(CERT_URL, json={KID: _self_signed_pem(key),
                                      "rotated-key": _self_signed_pem(other_key)})
    principal = authenticate(bearer(sign(claims(admin=True), other_key, kid="rotated-key")),
                             settings_for(), require_admin=True)
    assert principal.admin


# --- revocation (CHECK_REVOKED) -----------------------------------------------------------------

LOOKUP = f"https://identitytoolkit.googleapis.com/v1/projects/{PROJECT}/accounts:lookup"


@pytest.fixture
def adc(monkeypatch):
    """Application Default Credentials (none exist here): anonymous ones stand in for them."""
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setattr("google.auth.default",
                        lambda scopes=None, **kwargs: (AnonymousCredentials(), PROJECT))


def _account(valid_since: int | None = None, disabled: bool = False) -> dict[str, Any]:
    user: dict[str, Any] = {"localId": "uid-alice", "email": "alice@example.com",
                            "disabled": disabled, "customAttributes": '{"admin": true}'}
    if valid_since is not None:
        user["validSince"] = str(valid_since)
    return {"users": [user]}


def test_check_revoked_accepts_a_live_session(google_certs, requests_mock, key, adc):
    lookup = requests_mock.post(LOOKUP, json=_account(valid_since=int(time.time()) - 3600))
    settings = settings_for(CHECK_REVOKED="true")
    principal = authenticate(bearer(sign(claims(admin=True), key)), settings, require_admin=True)
    assert principal.admin and lookup.called
    assert lookup.last_request.json() == {"localId": ["uid-alice"]}


def test_check_revoked_refuses_a_revoked_session(google_certs, requests_mock, key, adc):
    requests_mock.post(LOOKUP, json=_account(valid_since=int(time.time()) + 5))
    error = refusal(bearer(sign(claims(admin=True), key)), settings_for(CHECK_REVOKED="true"))
    assert (status_of(error), error.code) == (401, "revoked_token")


def test_check_revoked_refuses_a_disabled_account(google_certs, requests_mock, key, adc):
    requests_mock.post(LOOKUP, json=_account(disabled=True))
    error = refusal(bearer(sign(claims(admin=True), key)), settings_for(CHECK_REVOKED="true"))
    assert (status_of(error), error.code) == (401, "user_disabled")


def test_check_revoked_refuses_a_deleted_account(google_certs, requests_mock, key, adc):
    requests_mock.post(LOOKUP, json={})
    error = refusal(bearer(sign(claims(admin=True), key)), settings_for(CHECK_REVOKED="true"))
    assert (status_of(error), error.code) == (401, "user_not_found")


def test_check_revoked_with_the_auth_api_down_is_503(google_certs, requests_mock, key, adc):
    requests_mock.post(LOOKUP, status_code=503, json={"error": {"message": "UNAVAILABLE"}})
    error = refusal(bearer(sign(claims(admin=True), key)), settings_for(CHECK_REVOKED="true"))
    assert status_of(error) == 503


def test_check_revoked_without_credentials_is_a_config_error(google_certs, key, monkeypatch):
    from google.auth.exceptions import DefaultCredentialsError

    def no_adc(scopes=None, **kwargs):
        raise DefaultCredentialsError("no credentials here")

    monkeypatch.setattr("google.auth.default", no_adc)
    error = refusal(bearer(sign(claims(admin=True), key)), settings_for(CHECK_REVOKED="true"))
    assert isinstance(error, ConfigError) and error.code == "missing_credentials"


def test_plain_verification_needs_no_credentials(google_certs, key, monkeypatch):
    def no_adc(scopes=None, **kwargs):
        raise AssertionError("verification must not look up credentials")

    monkeypatch.setattr("google.auth.default", no_adc)
    assert authenticate(bearer(sign(claims(admin=True), key)), settings_for(),
                        require_admin=True).admin


def test_check_revoked_argument_overrides_the_setting(google_certs, requests_mock, key, adc):
    lookup = requests_mock.post(LOOKUP, json=_account(valid_since=int(time.time()) + 5))
    token = sign(claims(admin=True), key)
    assert authenticate(bearer(token), settings_for(), require_admin=True).admin
    assert not lookup.called
    error = refusal(bearer(token), settings_for(), check_revoked=True)
    assert error.code == "revoked_token"


# --- the auth emulator ---------------------------------------------------------------------------

def _emulator_claims(project: str, **overrides: Any) -> dict[str, Any]:
    return claims(iss=f"https://securetoken.google.com/{project}", aud=project, **overrides)


def test_emulator_accepts_unsigned_tokens_of_a_demo_project(monkeypatch, requests_mock):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    settings = settings_for("demo-dashboard", FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099")
    token = unsigned(_emulator_claims("demo-dashboard", admin=True))
    principal = authenticate(bearer(token), settings, require_admin=True)
    assert principal.admin and principal.emulated and principal.uid == "uid-alice"
    assert not requests_mock.called


def test_emulator_still_checks_audience_and_admin(monkeypatch):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    settings = settings_for("demo-dashboard", FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099")
    error = refusal(bearer(unsigned(_emulator_claims("demo-other", admin=True))), settings)
    assert (status_of(error), error.code) == (401, "wrong_audience")
    error = refusal(bearer(unsigned(_emulator_claims("demo-dashboard"))), settings)
    assert (status_of(error), error.code) == (403, "not_admin")


@pytest.mark.parametrize(("field", "offset_s", "code"), [
    ("exp", -10, "expired_token"), ("iat", 60, "token_not_yet_valid"),
    ("exp", None, "invalid_token")], ids=["expired", "issued in the future", "no exp"])
def test_emulator_path_still_checks_the_token_times(monkeypatch, field, offset_s, code):
    # firebase-admin checks no times on the emulator path, so authenticate does. A minted token:
    # its own times are the point, and the Auth emulator always issues them as of now.
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    settings = settings_for("demo-dashboard", FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099")
    value = REMOVE if offset_s is None else int(time.time()) + offset_s
    token = unsigned(_emulator_claims("demo-dashboard", admin=True, **{field: value}))
    error = refusal(bearer(token), settings)
    assert (status_of(error), error.code) == (401, code)


def test_emulator_revocation_check_uses_the_emulator(monkeypatch, requests_mock):
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    settings = settings_for("demo-dashboard", FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099",
                            CHECK_REVOKED="true")
    lookup = requests_mock.post("http://127.0.0.1:9099/identitytoolkit.googleapis.com/v1/"
                                "projects/demo-dashboard/accounts:lookup",
                                json=_account(valid_since=int(time.time()) + 5))
    error = refusal(bearer(unsigned(_emulator_claims("demo-dashboard", admin=True))), settings)
    assert error.code == "revoked_token" and lookup.called


def test_settings_refuse_the_auth_emulator_outside_a_demo_project():
    with pytest.raises(ConfigError) as caught:
        settings_for(PROJECT, FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099")
    assert "FIREBASE_AUTH_EMULATOR_HOST" in caught.value.message
    assert "demo-" in caught.value.message and caught.value.code == "unsafe_setting"
    assert settings_for("demo-dashboard", FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9099")


def test_authenticate_refuses_when_the_emulator_appears_later(monkeypatch, google_certs, key):
    settings = settings_for()
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    error = refusal(bearer(unsigned(claims(admin=True))), settings)
    assert isinstance(error, ConfigError) and error.code == "unsafe_setting"


def test_without_the_emulator_unsigned_tokens_are_refused(google_certs):
    settings = settings_for("demo-dashboard")
    error = refusal(bearer(unsigned(_emulator_claims("demo-dashboard", admin=True))), settings)
    assert (status_of(error), error.code) == (401, "unsupported_algorithm")


# --- App Check -----------------------------------------------------------------------------------

@pytest.fixture
def app_check_keys(monkeypatch, key):
    """The App Check JWKS endpoint (unreachable here); PyJWT fetches it with urllib's opener,
    which this stand-in replaces for that one URL."""
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    body = json.dumps({"keys": [{**jwk, "kid": "app-check-kid", "alg": "RS256",
                                 "use": "sig"}]}).encode()
    fetched = []
    real_build_opener = urllib.request.build_opener

    class Opener:
        def __init__(self, *handlers):
            self.real = real_build_opener(*handlers)

        def open(self, request, *args, **kwargs):
            if request.full_url != APP_CHECK_JWKS_URL:
                return self.real.open(request, *args, **kwargs)
            fetched.append(request.full_url)
            return _Response(body)

    monkeypatch.setattr(urllib.request, "build_opener", Opener)
    return fetched


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def app_check_token(key, **overrides: Any) -> str:
    """An App Check token of the dashboard's web app."""
    now = int(time.time())
    payload = {"iss": f"https://firebaseappcheck.googleapis.com/{PROJECT_NUMBER}",
               "aud": [f"projects/{PROJECT_NUMBER}", f"projects/{PROJECT}"],
               "sub": "1:123456789012:web:abc", "iat": now - 10, "exp": now + 3600}
    payload.update(overrides)
    return jwt.encode(payload, key, algorithm="RS256",
                      headers={"kid": "app-check-kid", "typ": "JWT"})


def test_app_check_required_needs_the_header(google_certs, app_check_keys, key):
    settings = settings_for(APP_CHECK="required")
    error = refusal(bearer(sign(claims(admin=True), key)), settings)
    assert (status_of(error), error.code) == (401, "missing_app_check")


def test_app_check_required_accepts_a_valid_token(google_certs, app_check_keys, key):
    settings = settings_for(APP_CHECK="required")
    headers = {**bearer(sign(claims(admin=True), key)),
               "X-Firebase-AppCheck": app_check_token(key)}
    principal = authenticate(headers, settings, require_admin=True)
    assert principal.app_id == "1:123456789012:web:abc" and app_check_keys


@pytest.mark.parametrize("make", [
    lambda key, other: app_check_token(other),
    lambda key, other: app_check_token(key, aud=["projects/another"]),
    lambda key, other: app_check_token(key, exp=int(time.time()) - 10),
    lambda key, other: app_check_token(key, iss="https://evil.example/"),
    lambda key, other: "abc.def.ghi",
    lambda key, other: "not a token",
    lambda key, other: base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).rstrip(b"=").decode()
    + ".e30.c2ln",
], ids=["another key", "wrong aud", "expired", "wrong iss", "garbage JWT", "not a JWT",
        "deeply nested header"])
def test_app_check_refuses_bad_tokens(google_certs, app_check_keys, key, other_key, make):
    settings = settings_for(APP_CHECK="required")
    headers = {**bearer(sign(claims(admin=True), key)),
               "X-Firebase-AppCheck": make(key, other_key)}
    error = refusal(headers, settings)
    assert (status_of(error), error.code) == (401, "invalid_app_check")


def test_app_check_optional_checks_only_a_present_header(app_check_keys, key, other_key):
    settings = settings_for(APP_CHECK="optional")
    assert check_app_check({}, settings) is None
    assert check_app_check({"X-Firebase-AppCheck": app_check_token(key)}, settings)
    with pytest.raises(AppError) as caught:
        check_app_check({"X-Firebase-AppCheck": app_check_token(other_key)}, settings)
    assert caught.value.code == "invalid_app_check"


def test_app_check_off_ignores_the_header(app_check_keys):
    settings = settings_for()
    assert settings.app_check == "off"
    assert check_app_check({"X-Firebase-AppCheck": "garbage"}, settings) is None
    assert not app_check_keys


def test_app_check_keys_unreachable_is_503(monkeypatch, key):
    import urllib.error

    class Opener:
        def __init__(self, *handlers):
            pass

        def open(self, request, *args, **kwargs):
            raise urllib.error.URLError("unreachable")

    monkeypatch.setattr(urllib.request, "build_opener", Opener)
    with pytest.raises(AppError) as caught:
        check_app_check({"X-Firebase-AppCheck": app_check_token(key)},
                        settings_for(APP_CHECK="required"))
    assert status_of(caught.value) == 503


# --- settings -----------------------------------------------------------------------------------

def test_auth_settings_defaults():
    settings = settings_for()
    assert settings.check_revoked is False and settings.app_check == "off"


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("1", True), ("YES", True),
                                            ("on", True), ("false", False), ("0", False),
                                            ("no", False), ("off", False)])
def test_check_revoked_setting_is_parsed(raw, value):
    assert settings_for(CHECK_REVOKED=raw).check_revoked is value


@pytest.mark.parametrize(("name", "raw"), [("CHECK_REVOKED", "maybe"), ("CHECK_REVOKED", "2"),
                                           ("APP_CHECK", "on"), ("APP_CHECK", "Required")])
def test_invalid_auth_settings_name_the_variable(name, raw):
    with pytest.raises(ConfigError) as caught:
        settings_for(**{name: raw})
    assert name in caught.value.message


@pytest.mark.parametrize("mode", ["off", "optional", "required"])
def test_app_check_setting_values(mode):
    assert settings_for(APP_CHECK=mode).app_check == mode


# --- through the read API (READ_ACCESS=admin) ---------------------------------------------------

class _Blob:
    generation = 1

    def __init__(self, body: bytes):
        self.body = body

    def download_as_bytes(self, **kwargs: Any) -> bytes:
        return self.body


class _Storage:
    """A bucket holding the users snapshot (an index and its one part, in the snapshot format of
    shared/snapshot_parts.py); counts downloads."""

    def __init__(self) -> None:
        from shared.snapshot_parts import PartRef, SnapshotIndex, index_path, items_sum

        self.reads = 0
        items = [{"id": "u1", "name": "Ada", "email": "ada@example.com", "role": "admin",
                  "status": "active"}]
        part_name = "snapshots/users/parts/p1.json"
        part = json.dumps({"collection": "users", "generatedAt": "2024-05-01T00:00:00Z",
                           "items": items}).encode()
        index = SnapshotIndex("users", [PartRef(part_name, "", 1, len(part), len(part),
                                                items_sum(items))])
        self.objects = {index_path("users"): index.body("2024-05-01T00:00:00Z"),
                        part_name: part}

    def bucket(self, name: str) -> _Storage:
        return self

    def blob(self, path: str) -> _Blob:
        self.reads += 1
        return _Blob(self.objects[path])


@pytest.fixture
def admin_api():
    """The read API of an instance with READ_ACCESS=admin, served from a snapshot stand-in
    (Firestore is down: its client raises), so the test needs no emulator."""
    from functions.collection_api.context import ApiContext as ReadContext
    from tests.helpers import read_api_client

    storage = _Storage()
    db_calls = []

    def db():
        db_calls.append(1)
        raise RuntimeError("Firestore is down in this test")

    settings = settings_for(READ_ACCESS="admin", ALLOWED_ORIGINS="https://dash.example.org",
                            CACHE_TTL_S="0")
    context = ReadContext.create(settings, db=db, storage=lambda: storage)
    client = read_api_client(context)
    client.data_reads = lambda: len(db_calls) + storage.reads
    yield client
    context.executor.shutdown(wait=False, cancel_futures=True)


ORIGIN = {"Origin": "https://dash.example.org"}


def test_read_api_admin_token_reads(admin_api, google_certs, key):
    response = admin_api.get("/users", headers={**ORIGIN, **bearer(sign(claims(admin=True),
                                                                         key))})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert [item["id"] for item in response.get_json()["items"]] == ["u1"]
    assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example.org"


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "missing_token"),
    ({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, 401, "malformed_token"),
    ({"Authorization": "Bearer a.b.c"}, 401, "malformed_token"),
])
def test_read_api_refuses_without_a_valid_token(admin_api, requests_mock, headers, status, code):
    response = admin_api.get("/users", headers={**ORIGIN, **headers})
    assert response.status_code == status
    assert response.get_json() == {"error": {"code": code, "message": response.get_json()
                                             ["error"]["message"]}}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Access-Control-Allow-Origin"] == "https://dash.example.org"
    assert admin_api.data_reads() == 0


@pytest.mark.parametrize("case", ["expired", "wrong aud", "wrong kid", "alg none",
                                  "tampered payload"])
def test_read_api_refuses_bad_tokens_before_reading(admin_api, google_certs, key, other_key,
                                                    case):
    make, code = REFUSED_TOKENS[case]
    response = admin_api.get("/users/u1", headers=bearer(make(key, other_key)))
    assert response.status_code == 401 and response.get_json()["error"]["code"] == code
    assert admin_api.data_reads() == 0


def test_read_api_non_admin_is_403(admin_api, google_certs, key):
    response = admin_api.get("/users", headers=bearer(sign(claims(), key)))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "not_admin"
    assert admin_api.data_reads() == 0


def test_read_api_preflight_needs_no_token(admin_api, requests_mock):
    response = admin_api.options("/users", headers={
        **ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, x-firebase-appcheck"})
    assert response.status_code == 204
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "x-firebase-appcheck" in allowed
