"""An independent AWS_MSK_IAM payload builder in Python (hashlib/hmac only), written from the
mechanism's public description (the aws-msk-iam-auth README: a JSON object carrying a SigV4
query-string signature of `GET https://<broker>/?Action=kafka-cluster:Connect` for service
`kafka-cluster`). It produces the worked example in docs/SECURITY.md that the Swift unit
test checks; it is not checked against MSK itself, which is not reachable here."""

import hashlib
import hmac
import json
import time
from urllib.parse import quote

EXAMPLE = {
    "access_key": "AKIAIOSFODNN7EXAMPLE",
    "secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "session_token": "FwoGZXIvYXdzEXAMPLE/token+with=chars",
    "region": "us-east-1",
    "host": "b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com",
    "epoch": 1603324800,  # 2020-10-22T00:00:00Z
    "user_agent": "veil",
}


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def build(access_key, secret_key, session_token, region, host, epoch, user_agent):
    t = time.gmtime(epoch)
    date = time.strftime("%Y%m%d", t)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", t)
    scope = f"{date}/{region}/kafka-cluster/aws4_request"
    params = {
        "Action": "kafka-cluster:Connect",
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": "900",
        "X-Amz-SignedHeaders": "host",
    }
    if session_token:
        params["X-Amz-Security-Token"] = session_token
    enc = lambda s: quote(s, safe="-_.~")
    query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted((enc(k), v) for k, v in params.items()))
    canonical = "\n".join(["GET", "/", query, f"host:{host}", "", "host", hashlib.sha256(b"").hexdigest()])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode(), date)
    for part in (region, "kafka-cluster", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    payload = {
        "version": "2020_10_22",
        "host": host,
        "user-agent": user_agent,
        "action": "kafka-cluster:Connect",
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": f"{access_key}/{scope}",
        "x-amz-date": amz_date,
    }
    if session_token:
        payload["x-amz-security-token"] = session_token
    payload.update({"x-amz-signedheaders": "host", "x-amz-expires": "900", "x-amz-signature": signature})
    return {"canonical_request": canonical, "string_to_sign": to_sign, "signature": signature,
            "payload": json.dumps(payload, separators=(",", ":"))}


if __name__ == "__main__":
    for k, v in build(**EXAMPLE).items():
        print(f"--- {k}\n{v}")
