"""A local OIDC issuer: a FAKE of Google's signing of service-account ID tokens (Google's
cannot run here), for the local stack's scheduler and the tests.

It holds an RSA key, serves its public key at `certs_url` in the shape of Google's
`https://www.googleapis.com/oauth2/v1/certs` (`{key id: PEM}`), and signs tokens shaped like
the ones Cloud Scheduler sends (`iss` accounts.google.com, `aud`, `email`, `email_verified`).
The function verifies them with its real code path; `CATCHUP_CERTS_URL` may point here only
in a demo- project (shared.settings).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalIssuer:
    """Start with `LocalIssuer()`, sign with `token(...)`, `stop()` at the end."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from google.auth import crypt

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(8)
        private_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self._signer = crypt.RSASigner.from_string(private_pem, key_id=self.key_id)
        body = json.dumps({self.key_id: public_pem.decode()}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.certs_url = f"http://127.0.0.1:{self._server.server_address[1]}/certs"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def token(self, email: str, audience: str = "", *, lifetime_s: int = 300,
              verified: bool = True) -> str:
        """An ID token for `email`, as Cloud Scheduler's OIDC token carries it."""
        from google.auth import jwt

        now = int(time.time())
        claims = {"iss": "https://accounts.google.com", "sub": secrets.token_hex(10),
                  "aud": audience or "local", "email": email, "email_verified": verified,
                  "iat": now, "exp": now + lifetime_s}
        return jwt.encode(self._signer, claims).decode()

    def stop(self) -> None:
        """Stop serving the keys."""
        self._server.shutdown()
        self._server.server_close()
