"""Webhook signatures: published vectors verify verbatim, and the reference sender library and
ours accept each other's signatures (../shared/design/webhook-test-vectors.md)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import standardwebhooks
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pointguard.errors import (
    BadSignature,
    MissingSignature,
    StaleTimestamp,
    WebhookRejected,
)
from pointguard.http_errors import status_of
from pointguard.plugin.signatures import (
    MAX_SIGNATURES_PER_HEADER,
    new_ed25519_keypair,
    new_webhook_secret,
    sign_standard_webhook,
    verify_shopify_hmac,
    verify_standard_webhook,
    verify_woocommerce_hmac,
)

# Standard Webhooks v1 vectors, published in the official libraries' tests.
SECRET_1 = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID_1 = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP_1 = 1614265330
PAYLOAD_1 = b'{"test": 2432232314}'
SIGNATURE_1 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET_2 = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
MSG_ID_2 = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk"
TIMESTAMP_2 = 1649367553
PAYLOAD_2 = b'{"email":"test@example.com","username":"test_user"}'
SIGNATURE_2 = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="

# RFC 8032 section 7.1, TEST 1: a fixed Ed25519 seed and the public key it must derive.
ED25519_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ED25519_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")

# Shopify's own library tests; WooCommerce signs the same way.
SHOPIFY_SECRET = "test_secret_key"
SHOPIFY_BODY = b'{"foo": "bar"}'
SHOPIFY_HEADER = "B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g="


def at(unix_s: int) -> datetime:
    return datetime.fromtimestamp(unix_s, tz=UTC)


def verify(**overrides: Any) -> None:
    """Verify vector 1 at its own timestamp, with any argument replaced."""
    arguments: dict[str, Any] = {
        "secrets": [SECRET_1],
        "public_keys": [],
        "webhook_id": MSG_ID_1,
        "timestamp": str(TIMESTAMP_1),
        "signature_header": SIGNATURE_1,
        "body": PAYLOAD_1,
        "now": at(TIMESTAMP_1),
    } | overrides
    verify_standard_webhook(**arguments)


def sign(**overrides: Any) -> str:
    """Sign vector 1's content with its secret, with any argument replaced."""
    arguments: dict[str, Any] = {
        "secret": SECRET_1,
        "private_key": None,
        "webhook_id": MSG_ID_1,
        "timestamp": TIMESTAMP_1,
        "body": PAYLOAD_1,
    } | overrides
    return sign_standard_webhook(**arguments)


# v1 published vectors


def test_first_published_vector_verifies() -> None:
    verify()


def test_second_published_vector_verifies() -> None:
    verify(
        secrets=[SECRET_2],
        webhook_id=MSG_ID_2,
        timestamp=str(TIMESTAMP_2),
        signature_header=SIGNATURE_2,
        body=PAYLOAD_2,
        now=at(TIMESTAMP_2),
    )


def test_our_signer_reproduces_both_published_signatures() -> None:
    assert sign(secret=SECRET_1) == SIGNATURE_1
    assert (
        sign(secret=SECRET_2, webhook_id=MSG_ID_2, timestamp=TIMESTAMP_2, body=PAYLOAD_2)
        == SIGNATURE_2
    )


def test_changed_last_character_fails() -> None:
    changed = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
    with pytest.raises(BadSignature, match="no signature"):
        verify(signature_header=changed)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("body", b'{"test": 2432232315}'),
        ("webhook_id", "msg_p5jXN8AQM9LWM0D4loKWxJeK"),
        ("secrets", [SECRET_2]),
    ],
)
def test_changed_content_or_secret_fails(field: str, value: object) -> None:
    with pytest.raises(BadSignature):
        verify(**{field: value})


def test_changed_timestamp_within_tolerance_fails() -> None:
    with pytest.raises(BadSignature):
        verify(timestamp=str(TIMESTAMP_1 + 1))


# several signatures, rotation


def test_several_signatures_pass_when_any_is_valid() -> None:
    changed = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
    verify(signature_header=f"{changed} {SIGNATURE_1}")
    verify(signature_header=f"{SIGNATURE_1} {changed}")
    verify(signature_header=f"{SIGNATURE_2} {changed} {SIGNATURE_1}")


def test_several_signatures_fail_when_none_is_valid() -> None:
    changed = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
    with pytest.raises(BadSignature):
        verify(signature_header=f"{changed} {SIGNATURE_2}")


def test_rotation_with_two_secrets_passes_with_either() -> None:
    new_secret = new_webhook_secret()
    for signing_secret in (SECRET_1, new_secret):
        header = sign(secret=signing_secret)
        verify(secrets=[SECRET_1, new_secret], signature_header=header)
        verify(secrets=[new_secret, SECRET_1], signature_header=header)


def test_sender_signing_with_old_and_new_secret_passes_either_receiver() -> None:
    new_secret = new_webhook_secret()
    new_signature = sign(secret=new_secret)
    header = f"{SIGNATURE_1} {new_signature}"
    verify(secrets=[SECRET_1], signature_header=header)
    verify(secrets=[new_secret], signature_header=header)


# timestamp tolerance


@pytest.mark.parametrize("offset_s", [-300, 300, 0])
def test_timestamp_within_tolerance_passes(offset_s: int) -> None:
    verify(now=at(TIMESTAMP_1 + offset_s))


def test_timestamp_301_s_old_fails_saying_too_old_and_by_how_much() -> None:
    with pytest.raises(StaleTimestamp, match=r"too old: 301 s before now, 1 s beyond the 300 s"):
        verify(now=at(TIMESTAMP_1 + 301))


def test_timestamp_301_s_in_the_future_fails_saying_so_and_by_how_much() -> None:
    with pytest.raises(StaleTimestamp, match=r"in the future: 301 s after now, 1 s beyond"):
        verify(now=at(TIMESTAMP_1 - 301))


def test_fraction_of_a_second_past_the_boundary_still_counts_as_whole_seconds() -> None:
    verify(now=at(TIMESTAMP_1 + 300) + timedelta(milliseconds=999))


def test_tolerance_is_a_parameter() -> None:
    verify(now=at(TIMESTAMP_1 + 60), tolerance_s=60)
    with pytest.raises(StaleTimestamp):
        verify(now=at(TIMESTAMP_1 + 61), tolerance_s=60)


def test_now_in_another_time_zone_is_the_same_instant() -> None:
    verify(now=at(TIMESTAMP_1 + 300).astimezone(datetime.now().astimezone().tzinfo))


def test_timestamp_is_checked_before_the_signature() -> None:
    with pytest.raises(StaleTimestamp):
        verify(now=at(TIMESTAMP_1 + 3600), signature_header="v1,AAAA")


@pytest.mark.parametrize(
    "timestamp",
    [
        "1614265330.0",
        "abc",
        "-1614265330",
        " 1614265330",
        "1_614_265_330",
        "\uff11\uff16",  # full-width digits, which int() accepts
        "9" * 25,
    ],
)
def test_timestamp_not_whole_seconds_fails(timestamp: str) -> None:
    with pytest.raises(StaleTimestamp, match="not a Unix time in whole seconds"):
        verify(timestamp=timestamp)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(now=datetime(2021, 2, 25, 15, 2, 10))


# missing and malformed headers


@pytest.mark.parametrize(
    ("field", "header"),
    [
        ("webhook_id", "webhook-id"),
        ("timestamp", "webhook-timestamp"),
        ("signature_header", "webhook-signature"),
    ],
)
def test_missing_header_fails_naming_it(field: str, header: str) -> None:
    with pytest.raises(MissingSignature, match=header):
        verify(**{field: ""})


def test_all_headers_missing_names_all_three() -> None:
    with pytest.raises(MissingSignature, match="webhook-id, webhook-timestamp, webhook-signature"):
        verify(webhook_id="", timestamp="", signature_header="")


@pytest.mark.parametrize(
    "part",
    [
        "garbage",
        "v1",
        "v1,",
        ",g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "v1,not base64!",
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
        "v1,ü",
        "v1a,AAAA",
        "v1a,%%%",
        "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "V1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ],
)
def test_malformed_or_unknown_part_is_a_non_match(part: str) -> None:
    with pytest.raises(BadSignature):
        verify(signature_header=part)
    verify(signature_header=f"{part} {SIGNATURE_1}")


def test_extra_spaces_between_signatures_are_tolerated() -> None:
    verify(signature_header=f"  v2,abc   {SIGNATURE_1}  ")


def test_header_with_too_many_signatures_fails() -> None:
    header = " ".join([SIGNATURE_1] * (MAX_SIGNATURES_PER_HEADER + 1))
    with pytest.raises(BadSignature, match="more than the"):
        verify(signature_header=header)
    verify(signature_header=" ".join([SIGNATURE_1] * MAX_SIGNATURES_PER_HEADER))


def test_no_keys_at_all_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="no webhook secret or public key"):
        verify(secrets=[])


@pytest.mark.parametrize("secret", ["whsec_", "", "whsec_not base64!", "whsec_sécret"])
def test_malformed_configured_secret_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ValueError, match="followed by non-empty base64"):
        verify(secrets=[secret])


def test_malformed_secret_is_not_echoed_into_the_error() -> None:
    with pytest.raises(ValueError) as raised:
        verify(secrets=["whsec_my-secret?"])
    assert "my-secret" not in str(raised.value)


def test_secret_without_prefix_or_padding_is_the_same_key() -> None:
    verify(secrets=[SECRET_1.removeprefix("whsec_")])
    padded_secret = "whsec_QUJDREVGR0hJSg=="  # base64 of 10 bytes
    header = sign(secret=padded_secret)
    verify(secrets=[padded_secret.rstrip("=")], signature_header=header)


# v1a (Ed25519)


def fixed_key() -> tuple[bytes, bytes]:
    private_key = Ed25519PrivateKey.from_private_bytes(ED25519_SEED)
    return private_key.private_bytes_raw(), private_key.public_key().public_bytes_raw()


def test_fixed_seed_gives_the_rfc_8032_public_key() -> None:
    assert fixed_key()[1] == ED25519_PUBLIC


def test_v1a_round_trip() -> None:
    private_key, public_key = fixed_key()
    header = sign(secret=None, private_key=private_key)
    assert header.startswith("v1a,")
    assert header == sign(secret=None, private_key=private_key)  # Ed25519 is deterministic
    verify(secrets=[], public_keys=[public_key], signature_header=header)


def test_v1a_one_changed_body_byte_fails() -> None:
    private_key, public_key = fixed_key()
    header = sign(secret=None, private_key=private_key)
    changed = bytearray(PAYLOAD_1)
    changed[5] ^= 0x01
    with pytest.raises(BadSignature):
        verify(secrets=[], public_keys=[public_key], signature_header=header, body=bytes(changed))


def test_v1a_wrong_public_key_fails() -> None:
    private_key, _ = fixed_key()
    _, other_public_key = new_ed25519_keypair()
    with pytest.raises(BadSignature):
        verify(
            secrets=[],
            public_keys=[other_public_key],
            signature_header=sign(secret=None, private_key=private_key),
        )


def test_v1a_passes_with_any_of_several_public_keys() -> None:
    private_key, public_key = fixed_key()
    _, other_public_key = new_ed25519_keypair()
    verify(
        secrets=[],
        public_keys=[other_public_key, public_key],
        signature_header=sign(secret=None, private_key=private_key),
    )


def test_v1a_signature_is_not_accepted_as_v1_or_the_reverse() -> None:
    private_key, public_key = fixed_key()
    v1a_value = sign(secret=None, private_key=private_key).removeprefix("v1a,")
    v1_value = SIGNATURE_1.removeprefix("v1,")
    keys: dict[str, Any] = {"secrets": [SECRET_1], "public_keys": [public_key]}
    with pytest.raises(BadSignature):
        verify(signature_header=f"v1,{v1a_value} v1a,{v1_value}", **keys)


def test_wrong_length_public_key_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="32 raw bytes"):
        verify(public_keys=[ED25519_PUBLIC[:31]])


def test_signing_with_both_keys_gives_v1_then_v1a_and_each_verifies_alone() -> None:
    private_key, public_key = fixed_key()
    header = sign(private_key=private_key)
    v1, v1a = header.split(" ")
    assert v1 == SIGNATURE_1
    assert v1a == sign(secret=None, private_key=private_key)
    verify(secrets=[SECRET_1], signature_header=header)
    verify(secrets=[], public_keys=[public_key], signature_header=header)


def test_signing_with_no_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="needs a secret"):
        sign(secret=None, private_key=None)


# key generation


def test_new_webhook_secret_is_prefixed_base64_of_24_bytes_and_fresh() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(secret) == len("whsec_") + 32
    assert new_webhook_secret() != secret
    verify(secrets=[secret], signature_header=sign(secret=secret))


def test_new_ed25519_keypair_is_raw_32_bytes_and_matching() -> None:
    private_key, public_key = new_ed25519_keypair()
    assert len(private_key) == 32
    assert len(public_key) == 32
    assert Ed25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw() == (
        public_key
    )
    assert new_ed25519_keypair()[0] != private_key


# cross-check with the reference sender library (standardwebhooks on PyPI)


def test_reference_library_signature_verifies_with_ours() -> None:
    payload = '{"type": "order.paid", "data": {"total_minor": 1250}}'
    header = standardwebhooks.webhooks.Webhook(SECRET_2).sign(MSG_ID_2, at(TIMESTAMP_2), payload)
    verify(
        secrets=[SECRET_2],
        webhook_id=MSG_ID_2,
        timestamp=str(TIMESTAMP_2),
        signature_header=header,
        body=payload.encode(),
        now=at(TIMESTAMP_2),
    )


def test_our_signature_verifies_with_the_reference_library() -> None:
    # The reference verifier checks against the real clock, so this test signs for now.
    timestamp = int(time.time())
    payload = '{"type": "order.paid", "data": {"total_minor": 1250}}'
    header = sign(secret=SECRET_2, webhook_id=MSG_ID_2, timestamp=timestamp, body=payload.encode())
    reference = standardwebhooks.webhooks.Webhook(SECRET_2)
    headers = {
        "webhook-id": MSG_ID_2,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": header,
    }
    assert reference.verify(payload, headers) == {
        "type": "order.paid",
        "data": {"total_minor": 1250},
    }
    tampered = payload.replace("1250", "1251")
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        reference.verify(tampered, headers)


# Shopify and WooCommerce


@pytest.mark.parametrize("verify_body", [verify_shopify_hmac, verify_woocommerce_hmac])
def test_shopify_vector_passes_under_both_names(verify_body: Any) -> None:
    verify_body(secrets=[SHOPIFY_SECRET], header=SHOPIFY_HEADER, body=SHOPIFY_BODY)
    verify_body(secrets=["old_secret", SHOPIFY_SECRET], header=SHOPIFY_HEADER, body=SHOPIFY_BODY)


@pytest.mark.parametrize("verify_body", [verify_shopify_hmac, verify_woocommerce_hmac])
def test_shopify_vector_fails_with_changed_body(verify_body: Any) -> None:
    with pytest.raises(BadSignature):
        verify_body(secrets=[SHOPIFY_SECRET], header=SHOPIFY_HEADER, body=b'{"foo": "baz"}')


def test_woocommerce_is_the_same_function() -> None:
    assert verify_woocommerce_hmac is verify_shopify_hmac


@pytest.mark.parametrize(
    "header", [SHOPIFY_HEADER[:-2] + "A=", "not base64!", SHOPIFY_HEADER.rstrip("=")]
)
def test_shopify_changed_or_malformed_header_fails(header: str) -> None:
    with pytest.raises(BadSignature):
        verify_shopify_hmac(secrets=[SHOPIFY_SECRET], header=header, body=SHOPIFY_BODY)


def test_shopify_wrong_secret_fails_and_missing_header_is_missing() -> None:
    with pytest.raises(BadSignature):
        verify_shopify_hmac(secrets=["other"], header=SHOPIFY_HEADER, body=SHOPIFY_BODY)
    with pytest.raises(MissingSignature):
        verify_shopify_hmac(secrets=[SHOPIFY_SECRET], header="", body=SHOPIFY_BODY)
    with pytest.raises(ValueError, match="no webhook secret"):
        verify_shopify_hmac(secrets=[], header=SHOPIFY_HEADER, body=SHOPIFY_BODY)


# errors


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (WebhookRejected, "webhook_rejected"),
        (MissingSignature, "missing_signature"),
        (StaleTimestamp, "stale_timestamp"),
        (BadSignature, "bad_signature"),
    ],
)
def test_rejections_have_stable_codes_and_answer_401(
    error: type[WebhookRejected], code: str
) -> None:
    assert error.code == code
    assert status_of(error("x")) == 401
    assert issubclass(error, WebhookRejected)
