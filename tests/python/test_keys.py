"""Keys and cryptographic operations through the unmodified azure-keyvault-keys SDK.

Every signature Keystead makes is verified independently with `cryptography` against the public
JWK Keystead returned; data encrypted locally with that public key is decrypted by Keystead;
imported keys round-trip. Challenge-resource verification stays ON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import (JsonWebKey, KeyClient, KeyCurveName, KeyReleasePolicy,
                                 KeyRotationLifetimeAction,
                                 KeyRotationPolicy, KeyRotationPolicyAction, KeyType)
from azure.keyvault.keys.crypto import (CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm,
                                        SignatureAlgorithm)
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, keywrap
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keystead_helpers import assert_kv_error, b64url, b64url_decode, uniq

HASHES = {256: (hashes.SHA256, hashlib.sha256), 384: (hashes.SHA384, hashlib.sha384),
          512: (hashes.SHA512, hashlib.sha512)}
CURVES = {
    "P-256": (ec.SECP256R1, 32, SignatureAlgorithm.es256, 256),
    "P-384": (ec.SECP384R1, 48, SignatureAlgorithm.es384, 384),
    "P-521": (ec.SECP521R1, 66, SignatureAlgorithm.es512, 512),
    "P-256K": (ec.SECP256K1, 32, SignatureAlgorithm.es256_k, 256),
}
PRIVATE_FIELDS = {"d", "p", "q", "dp", "dq", "qi", "k"}


# ------------------------------------------------------------------ fixtures & helpers
@pytest.fixture(scope="module")
def keys(server) -> KeyClient:
    return KeyClient(server.vault_url("demo"), server.credential(), connection_verify=server.ca,
                     connection_timeout=10, read_timeout=120)


@pytest.fixture(scope="module")
def cred(server):
    return server.credential()


def crypto(server, cred, key) -> CryptographyClient:
    """A CryptographyClient built from a key id: it GETs the JWK and works locally where it can."""
    kid = key if isinstance(key, str) else key.id
    return CryptographyClient(kid, cred, connection_verify=server.ca)


def remote_crypto(server, cred, key) -> CryptographyClient:
    """A CryptographyClient that sends every operation to Keystead (no local provider)."""
    client = crypto(server, cred, key)
    # Mark the client initialized without a key: every operation then goes to the service.
    client._local_provider = _NoLocal()  # noqa: SLF001
    client._initialized = True  # noqa: SLF001
    return client


class _NoLocal:
    def supports(self, *_a, **_k):
        return False


def public_rsa(jwk) -> rsa.RSAPublicKey:
    n = int.from_bytes(jwk.n, "big")
    e = int.from_bytes(jwk.e, "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def public_ec(jwk) -> ec.EllipticCurvePublicKey:
    curve = CURVES[str(jwk.crv.value if hasattr(jwk.crv, "value") else jwk.crv)][0]()
    return ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"),
                                         curve).public_key()


def kname() -> str:
    return uniq("key")


def raw_json(raw, method, path, **kw):
    return raw.request(method, path, **kw)


# ------------------------------------------------------------------ creation and the exact JWK
@pytest.mark.parametrize("size", [2048, 3072, 4096])
def test_create_rsa_jwk_is_exact_and_public(keys, size):
    key = keys.create_rsa_key(kname(), size=size)
    jwk = key.key
    assert jwk.kty == KeyType.rsa
    assert len(jwk.n) == size // 8 and jwk.n[0] & 0x80
    assert jwk.e == b"\x01\x00\x01"
    for field in PRIVATE_FIELDS:
        assert getattr(jwk, field, None) in (None, b""), field
    assert set(key.key_operations) == {"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
    assert key.properties.enabled is True
    assert key.id.startswith(keys.vault_url + "/keys/") and len(key.properties.version) == 32


@pytest.mark.parametrize("crv", list(CURVES))
def test_create_ec_jwk_coordinates_fixed_size(keys, crv):
    key = keys.create_ec_key(kname(), curve=crv)
    jwk = key.key
    assert jwk.kty == KeyType.ec
    assert jwk.crv == crv
    size = CURVES[crv][1]
    assert len(jwk.x) == size and len(jwk.y) == size
    public_ec(jwk)  # on the curve, or cryptography raises
    assert jwk.d is None


@pytest.mark.parametrize("size", [128, 192, 256])
def test_create_oct_never_returns_k(keys, size):
    key = keys.create_oct_key(kname(), size=size)
    assert key.key.kty == KeyType.oct
    assert key.key.k is None


def test_create_rsa_custom_public_exponent(keys, server, cred):
    name = kname()
    key = keys.create_rsa_key(name, public_exponent=3)
    assert key.key.e == b"\x03"
    digest = hashlib.sha256(b"e=3").digest()
    sig = crypto(server, cred, key).sign(SignatureAlgorithm.ps256, digest).signature
    public_rsa(key.key).verify(sig, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                               utils.Prehashed(hashes.SHA256()))
    assert keys.rotate_key(name).key.e == b"\x03"


def test_hsm_types_accepted_but_reported_as_software(keys, raw):
    name = kname()
    key = keys.create_rsa_key(name, hardware_protected=True)
    assert key.key.kty == KeyType.rsa
    body = raw.get(f"/keys/{name}/").json()
    assert body["attributes"]["protection"] == "software"
    assert body["key"]["kty"] == "RSA"
    ec_key = keys.create_ec_key(kname(), curve="P-256", hardware_protected=True)
    assert ec_key.key.kty == KeyType.ec


def test_create_bad_parameters(raw):
    name = kname()
    assert_kv_error(raw.post(f"/keys/{name}/create", json={"kty": "RSA", "key_size": 1024}), 400,
                    "BadParameter")
    assert_kv_error(raw.post(f"/keys/{name}/create", json={"kty": "EC", "crv": "P-999"}), 400,
                    "BadParameter")
    assert_kv_error(raw.post(f"/keys/{name}/create", json={"kty": "DSA"}), 400, "BadParameter")
    assert_kv_error(raw.post(f"/keys/{name}/create", json={"kty": "oct", "key_size": 512}), 400,
                    "BadParameter")
    assert_kv_error(raw.post(f"/keys/{name}/create",
                             json={"kty": "RSA", "public_exponent": 4}), 400, "BadParameter")
    assert_kv_error(raw.post(f"/keys/{name}/create", json={"kty": "RSA", "key_ops": ["fly"]}), 400,
                    "BadParameter")
    assert_kv_error(raw.post(f"/keys/{name}/create", json={}), 400, "BadParameter")


# ------------------------------------------------------------------ lifecycle
def test_exportable_and_release_policy_are_stored(keys, raw):
    policy = b'{"version":"1.0.0","anyOf":[{"authority":"https://attest.example","allOf":[]}]}'
    name = kname()
    created = keys.create_rsa_key(name, size=2048, exportable=True,
                                  release_policy=KeyReleasePolicy(policy))
    fetched = keys.get_key(name)
    for key in (created, fetched):
        assert key.properties.exportable is True
        assert key.properties.release_policy.encoded_policy == policy
        assert not key.properties.release_policy.immutable
    # Exportable keys need a release policy, as in Key Vault.
    assert_kv_error(raw.post(f"/keys/{kname()}/create", json={
        "kty": "RSA", "attributes": {"exportable": True}}), 400, "BadParameter")
    # A mutable policy may change; an immutable one only be sent again unchanged.
    updated = keys.update_key_properties(name, release_policy=KeyReleasePolicy(
        policy, immutable=True))
    assert updated.properties.release_policy.immutable
    with pytest.raises(HttpResponseError) as err:
        keys.update_key_properties(name, release_policy=KeyReleasePolicy(b'{"version":"1.0.0"}',
                                                                         immutable=True))
    assert err.value.status_code == 400 and err.value.error.code == "BadParameter"
    again = keys.update_key_properties(name, release_policy=KeyReleasePolicy(policy, immutable=True),
                                       tags={"still": "updatable"})
    assert again.properties.tags == {"still": "updatable"}
    assert keys.get_key(name).properties.release_policy.encoded_policy == policy


def test_get_list_versions_update(keys):
    name = kname()
    first = keys.create_ec_key(name, curve="P-256", tags={"a": "1"})
    second = keys.create_ec_key(name, curve="P-256")
    assert keys.get_key(name).properties.version == second.properties.version
    assert keys.get_key(name, first.properties.version).key.x == first.key.x
    versions = {p.version for p in keys.list_properties_of_key_versions(name)}
    assert versions == {first.properties.version, second.properties.version}
    names = [p.name for p in keys.list_properties_of_keys()]
    assert name in names
    updated = keys.update_key_properties(name, enabled=False, tags={"b": "2"}, key_operations=["verify"])
    assert updated.properties.enabled is False
    assert updated.properties.tags == {"b": "2"}
    assert updated.key_operations == ["verify"]
    again = keys.update_key_properties(name, first.properties.version, enabled=True)
    assert again.properties.version == first.properties.version and again.properties.enabled
    expires = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=30)
    dated = keys.update_key_properties(name, expires_on=expires)
    assert dated.properties.expires_on == expires


def test_delete_recover_purge(keys):
    name = kname()
    keys.create_rsa_key(name)
    deleted = keys.begin_delete_key(name).result()
    assert deleted.recovery_id.endswith(f"/deletedkeys/{name}")
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    assert keys.get_deleted_key(name).name == name
    assert name in [k.name for k in keys.list_deleted_keys()]
    with pytest.raises(ResourceNotFoundError):
        keys.get_key(name)
    with pytest.raises(ResourceExistsError):
        keys.create_rsa_key(name)
    recovered = keys.begin_recover_deleted_key(name).result()
    assert recovered.name == name and recovered.key.n
    keys.begin_delete_key(name).result()
    keys.purge_deleted_key(name)
    with pytest.raises(ResourceNotFoundError):
        keys.get_deleted_key(name)


def test_not_found_code(raw):
    assert_kv_error(raw.get(f"/keys/{kname()}/"), 404, "KeyNotFound")
    assert_kv_error(raw.get(f"/deletedkeys/{kname()}"), 404, "KeyNotFound")


def test_backup_restore(keys, server, cred):
    name = kname()
    key = keys.create_rsa_key(name)
    keys.create_rsa_key(name)
    blob = keys.backup_key(name)
    keys.begin_delete_key(name).result()
    keys.purge_deleted_key(name)
    restored = keys.restore_key_backup(blob)
    assert restored.name == name
    assert len(list(keys.list_properties_of_key_versions(name))) == 2
    # The restored private key still works: decrypt what the old public key encrypted.
    ct = public_rsa(key.key).encrypt(b"after restore", padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    client = crypto(server, cred, keys.get_key(name, key.properties.version))
    assert client.decrypt(EncryptionAlgorithm.rsa_oaep_256, ct).plaintext == b"after restore"
    with pytest.raises(ResourceExistsError):
        keys.restore_key_backup(blob)
    with pytest.raises(HttpResponseError) as err:
        keys.restore_key_backup(b"garbage-not-a-backup")
    assert err.value.status_code == 400


def test_secret_backup_is_not_a_key_backup(keys, server, raw):
    secret = uniq("sec")
    raw.set_secret(secret, "v")
    blob = raw.post(f"/secrets/{secret}/backup").json()["value"]
    assert_kv_error(raw.post("/keys/restore", json={"value": blob}), 400, "BadParameter")


# ------------------------------------------------------------------ signatures
@pytest.mark.parametrize("alg,bits,pss", [
    (SignatureAlgorithm.rs256, 256, False), (SignatureAlgorithm.rs384, 384, False),
    (SignatureAlgorithm.rs512, 512, False), (SignatureAlgorithm.ps256, 256, True),
    (SignatureAlgorithm.ps384, 384, True), (SignatureAlgorithm.ps512, 512, True)])
def test_rsa_signatures_verify_independently(keys, server, cred, alg, bits, pss):
    key = keys.create_rsa_key(kname())
    client = crypto(server, cred, key)
    chash, hfun = HASHES[bits]
    digest = hfun(b"message to sign").digest()
    result = client.sign(alg, digest)
    assert result.key_id == key.id
    pad = (padding.PSS(mgf=padding.MGF1(chash()), salt_length=chash().digest_size) if pss
           else padding.PKCS1v15())
    public_rsa(key.key).verify(result.signature, digest, pad, utils.Prehashed(chash()))
    assert client.verify(alg, digest, result.signature).is_valid
    # Server-side verify too.
    remote = remote_crypto(server, cred, key)
    assert remote.verify(alg, digest, result.signature).is_valid
    assert not remote.verify(alg, hfun(b"other").digest(), result.signature).is_valid


@pytest.mark.parametrize("crv", list(CURVES))
def test_ec_signatures_raw_r_s_verify_independently(keys, server, cred, crv):
    key = keys.create_ec_key(kname(), curve=crv)
    _, size, alg, bits = CURVES[crv]
    chash, hfun = HASHES[bits]
    digest = hfun(b"ec message").digest()
    client = crypto(server, cred, key)
    sig = client.sign(alg, digest).signature
    assert len(sig) == 2 * size
    r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
    public_ec(key.key).verify(utils.encode_dss_signature(r, s), digest,
                              ec.ECDSA(utils.Prehashed(chash())))
    assert client.verify(alg, digest, sig).is_valid
    remote = remote_crypto(server, cred, key)
    assert remote.verify(alg, digest, sig).is_valid
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    assert not remote.verify(alg, digest, bad).is_valid


def test_sign_errors(keys, raw):
    name = kname()
    keys.create_ec_key(name, curve="P-256")
    digest = b64url(hashlib.sha256(b"x").digest())
    # digest of the wrong length
    assert_kv_error(raw.post(f"/keys/{name}/sign", json={"alg": "ES256", "value": b64url(b"short")}),
                    400, "BadParameter")
    # curve does not match the algorithm
    assert_kv_error(raw.post(f"/keys/{name}/sign", json={"alg": "ES384", "value": digest}), 400,
                    "BadParameter")
    # algorithm for another key type
    assert_kv_error(raw.post(f"/keys/{name}/sign", json={"alg": "RS256", "value": digest}), 400,
                    "BadParameter")
    assert_kv_error(raw.post(f"/keys/{name}/sign", json={"alg": "RSNULL", "value": digest}), 400,
                    "BadParameter")
    assert_kv_error(raw.post(f"/keys/{name}/sign", json={"alg": "nope", "value": digest}), 400,
                    "BadParameter")
    # EC keys cannot encrypt
    assert_kv_error(raw.post(f"/keys/{name}/encrypt", json={"alg": "RSA-OAEP", "value": digest}),
                    (400, 403))


def test_versionless_and_double_slash_paths(keys, raw):
    name = kname()
    key = keys.create_ec_key(name, curve="P-256")
    digest = b64url(hashlib.sha256(b"paths").digest())
    for path in [f"/keys/{name}/sign", f"/keys/{name}//sign",
                 f"/keys/{name}/{key.properties.version}/sign"]:
        r = raw.post(path, json={"alg": "ES256", "value": digest})
        assert r.status_code == 200, (path, r.text)
        assert r.json()["kid"] == key.id


# ------------------------------------------------------------------ RSA encryption and wrap
@pytest.mark.parametrize("alg", [EncryptionAlgorithm.rsa_oaep, EncryptionAlgorithm.rsa_oaep_256,
                                 EncryptionAlgorithm.rsa1_5])
def test_rsa_encrypt_locally_decrypt_in_keystead(keys, server, cred, alg):
    key = keys.create_rsa_key(kname())
    client = crypto(server, cred, key)
    enc = client.encrypt(alg, b"secret payload")  # local, with the returned JWK
    assert client.decrypt(alg, enc.ciphertext).plaintext == b"secret payload"
    # Independently encrypted with `cryptography`:
    pad = {EncryptionAlgorithm.rsa_oaep: padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None),
           EncryptionAlgorithm.rsa_oaep_256: padding.OAEP(padding.MGF1(hashes.SHA256()),
                                                          hashes.SHA256(), None),
           EncryptionAlgorithm.rsa1_5: padding.PKCS1v15()}[alg]
    ct = public_rsa(key.key).encrypt(b"from cryptography", pad)
    assert client.decrypt(alg, ct).plaintext == b"from cryptography"
    # Server-side encryption decrypts too.
    remote = remote_crypto(server, cred, key)
    enc2 = remote.encrypt(alg, b"server side")
    assert client.decrypt(alg, enc2.ciphertext).plaintext == b"server side"


@pytest.mark.parametrize("alg", [KeyWrapAlgorithm.rsa_oaep, KeyWrapAlgorithm.rsa_oaep_256,
                                 KeyWrapAlgorithm.rsa1_5])
def test_rsa_wrap_unwrap(keys, server, cred, alg):
    key = keys.create_rsa_key(kname())
    cek = os.urandom(32)
    client = crypto(server, cred, key)
    wrapped = client.wrap_key(alg, cek)
    assert client.unwrap_key(alg, wrapped.encrypted_key).key == cek
    remote = remote_crypto(server, cred, key)
    assert client.unwrap_key(alg, remote.wrap_key(alg, cek).encrypted_key).key == cek


def test_failed_rsa_decryption_is_uniform(keys, raw):
    name = kname()
    keys.create_rsa_key(name)
    bodies = []
    for alg in ["RSA1_5", "RSA-OAEP", "RSA-OAEP-256"]:
        junk = b64url(os.urandom(256))
        err = assert_kv_error(raw.post(f"/keys/{name}/decrypt", json={"alg": alg, "value": junk}),
                              400, "BadParameter")
        bodies.append(err["message"])
    assert len(set(bodies)) == 1


# ------------------------------------------------------------------ symmetric keys
@pytest.mark.parametrize("size", [128, 192, 256])
def test_aes_gcm(keys, server, cred, size):
    key = keys.create_oct_key(kname(), size=size)
    client = crypto(server, cred, key)
    alg = getattr(EncryptionAlgorithm, f"a{size}_gcm")
    enc = client.encrypt(alg, b"gcm plaintext", additional_authenticated_data=b"header")
    assert len(enc.iv) == 12 and len(enc.tag) == 16
    dec = client.decrypt(alg, enc.ciphertext, iv=enc.iv, authentication_tag=enc.tag,
                         additional_authenticated_data=b"header")
    assert dec.plaintext == b"gcm plaintext"
    with pytest.raises(HttpResponseError) as err:
        client.decrypt(alg, enc.ciphertext, iv=enc.iv, authentication_tag=enc.tag,
                       additional_authenticated_data=b"other")
    assert err.value.status_code == 400


@pytest.mark.parametrize("size", [128, 192, 256])
@pytest.mark.parametrize("pad", [False, True])
def test_aes_cbc(keys, server, cred, size, pad):
    key = keys.create_oct_key(kname(), size=size)
    # remote: the SDK would otherwise run CBCPAD itself, with a random key of its own (a created
    # oct key's JWK has no `k`), and never ask Keystead.
    client = remote_crypto(server, cred, key)
    alg = getattr(EncryptionAlgorithm, f"a{size}_cbc{'pad' if pad else ''}")
    plaintext = b"sixteen byte blk" * 2 if not pad else b"any length at all"
    iv = os.urandom(16)
    enc = client.encrypt(alg, plaintext, iv=iv)
    assert enc.iv == iv
    assert client.decrypt(alg, enc.ciphertext, iv=iv).plaintext == plaintext


@pytest.mark.parametrize("size", [128, 192, 256])
def test_aes_key_wrap(keys, server, cred, size):
    key = keys.create_oct_key(kname(), size=size)
    client = remote_crypto(server, cred, key)  # as in test_aes_cbc: A*KW would run in the SDK
    cek = os.urandom(32)
    for alg in [getattr(KeyWrapAlgorithm, f"aes_{size}"), KeyWrapAlgorithm.ckm_aes_key_wrap,
                KeyWrapAlgorithm.ckm_aes_key_wrap_pad]:
        wrapped = client.wrap_key(alg, cek)
        assert len(wrapped.encrypted_key) == 40
        assert client.unwrap_key(alg, wrapped.encrypted_key).key == cek
    odd = os.urandom(20)
    padded = client.wrap_key(KeyWrapAlgorithm.ckm_aes_key_wrap_pad, odd)
    assert client.unwrap_key(KeyWrapAlgorithm.ckm_aes_key_wrap_pad, padded.encrypted_key).key == odd


def test_aes_kw_size_mismatch(keys, raw):
    name = kname()
    keys.create_oct_key(name, size=128)
    assert_kv_error(raw.post(f"/keys/{name}/wrapkey", json={"alg": "A256KW",
                                                           "value": b64url(os.urandom(32))}),
                    400, "BadParameter")


def test_hmac(keys, server, cred):
    key = keys.create_oct_key(kname(), size=256)
    client = remote_crypto(server, cred, key)
    for alg in [SignatureAlgorithm.hs256, SignatureAlgorithm.hs384, SignatureAlgorithm.hs512]:
        data = hashlib.sha256(b"mac me").digest()
        sig = client.sign(alg, data).signature
        assert client.verify(alg, data, sig).is_valid
        assert not client.verify(alg, data, bytes([sig[0] ^ 1]) + sig[1:]).is_valid


def test_imported_oct_matches_local_aes(keys, server, cred):
    k = os.urandom(32)
    name = kname()
    keys.import_key(name, JsonWebKey(kty="oct", k=k,
                                     key_ops=["encrypt", "decrypt", "wrapKey", "unwrapKey"]))
    client = crypto(server, cred, keys.get_key(name))
    iv = os.urandom(12)
    ct = AESGCM(k).encrypt(iv, b"local aes", b"aad")
    dec = client.decrypt(EncryptionAlgorithm.a256_gcm, ct[:-16], iv=iv, authentication_tag=ct[-16:],
                         additional_authenticated_data=b"aad")
    assert dec.plaintext == b"local aes"


@pytest.mark.parametrize("size", [128, 192, 256])
def test_symmetric_operations_agree_with_cryptography(keys, server, cred, size):
    """An imported oct key's bytes are known, so every AES and HMAC result Keystead gives is
    checked against the `cryptography` package, in both directions where both exist."""
    k = os.urandom(size // 8)
    name = kname()
    keys.import_key(name, JsonWebKey(kty="oct", k=k, key_ops=[
        "encrypt", "decrypt", "wrapKey", "unwrapKey", "sign", "verify"]))
    client = remote_crypto(server, cred, keys.get_key(name))

    gcm = getattr(EncryptionAlgorithm, f"a{size}_gcm")
    enc = client.encrypt(gcm, b"gcm plaintext", additional_authenticated_data=b"aad")
    assert AESGCM(k).decrypt(enc.iv, enc.ciphertext + enc.tag, b"aad") == b"gcm plaintext"
    iv = os.urandom(12)
    sealed = AESGCM(k).encrypt(iv, b"sealed locally", b"aad")
    assert client.decrypt(gcm, sealed[:-16], iv=iv, authentication_tag=sealed[-16:],
                          additional_authenticated_data=b"aad").plaintext == b"sealed locally"

    for pad in (False, True):
        cbc = getattr(EncryptionAlgorithm, f"a{size}_cbc{'pad' if pad else ''}")
        plaintext = b"any length at all" if pad else b"sixteen byte blk" * 2
        iv = os.urandom(16)
        enc = client.encrypt(cbc, plaintext, iv=iv)
        local = Cipher(algorithms.AES(k), modes.CBC(iv)).decryptor()
        opened = local.update(enc.ciphertext) + local.finalize()
        if pad:
            unpad = sym_padding.PKCS7(128).unpadder()
            opened = unpad.update(opened) + unpad.finalize()
        assert opened == plaintext
        assert client.decrypt(cbc, enc.ciphertext, iv=iv).plaintext == plaintext

    cek = os.urandom(32)
    for alg in (getattr(KeyWrapAlgorithm, f"aes_{size}"), KeyWrapAlgorithm.ckm_aes_key_wrap):
        wrapped = client.wrap_key(alg, cek).encrypted_key
        assert keywrap.aes_key_unwrap(k, wrapped) == cek
        assert client.unwrap_key(alg, keywrap.aes_key_wrap(k, cek)).key == cek
    odd = os.urandom(20)
    wrapped = client.wrap_key(KeyWrapAlgorithm.ckm_aes_key_wrap_pad, odd).encrypted_key
    assert keywrap.aes_key_unwrap_with_padding(k, wrapped) == odd
    local = keywrap.aes_key_wrap_with_padding(k, odd)
    assert client.unwrap_key(KeyWrapAlgorithm.ckm_aes_key_wrap_pad, local).key == odd

    data = hashlib.sha256(b"mac me").digest()
    for bits in (256, 384, 512):
        alg = getattr(SignatureAlgorithm, f"hs{bits}")
        mac = client.sign(alg, data).signature
        assert mac == hmac.new(k, data, HASHES[bits][1]).digest()
        assert client.verify(alg, data, mac).is_valid


# ------------------------------------------------------------------ import
def _rsa_jwk(private: rsa.RSAPrivateKey, crt: bool = True) -> JsonWebKey:
    nums = private.private_numbers()

    def b(i):
        return i.to_bytes((i.bit_length() + 7) // 8, "big")

    fields = dict(kty="RSA", n=b(nums.public_numbers.n), e=b(nums.public_numbers.e), d=b(nums.d))
    if crt:
        fields.update(p=b(nums.p), q=b(nums.q), dp=b(nums.dmp1), dq=b(nums.dmq1), qi=b(nums.iqmp))
    return JsonWebKey(**fields)


def test_import_rsa_round_trip(keys, server, cred):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = kname()
    imported = keys.import_key(name, _rsa_jwk(private))
    assert imported.key.n == private.public_key().public_numbers().n.to_bytes(256, "big")
    for field in PRIVATE_FIELDS:
        assert getattr(imported.key, field, None) in (None, b""), field
    client = crypto(server, cred, imported)
    digest = hashlib.sha256(b"imported").digest()
    sig = client.sign(SignatureAlgorithm.ps256, digest).signature
    private.public_key().verify(sig, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                                utils.Prehashed(hashes.SHA256()))
    ct = private.public_key().encrypt(b"to keystead", padding.OAEP(padding.MGF1(hashes.SHA1()),
                                                                 hashes.SHA1(), None))
    assert client.decrypt(EncryptionAlgorithm.rsa_oaep, ct).plaintext == b"to keystead"
    enc = remote_crypto(server, cred, imported).encrypt(EncryptionAlgorithm.rsa_oaep_256, b"back")
    assert private.decrypt(enc.ciphertext, padding.OAEP(padding.MGF1(hashes.SHA256()),
                                                        hashes.SHA256(), None)) == b"back"


def test_import_rsa_without_crt_params(keys, server, cred):
    private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    imported = keys.import_key(kname(), _rsa_jwk(private, crt=False))
    assert len(imported.key.n) == 384
    client = crypto(server, cred, imported)
    digest = hashlib.sha384(b"no crt").digest()
    sig = client.sign(SignatureAlgorithm.rs384, digest).signature
    private.public_key().verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA384()))
    ct = private.public_key().encrypt(b"no crt either", padding.PKCS1v15())
    assert client.decrypt(EncryptionAlgorithm.rsa1_5, ct).plaintext == b"no crt either"


def test_import_rsa_hsm_flag_and_bad_keys(keys, raw):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = keys.import_key(kname(), _rsa_jwk(private), hardware_protected=True)
    assert key.key.kty == KeyType.rsa
    # inconsistent components
    jwk = _rsa_jwk(private)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk.d = _rsa_jwk(other).d
    with pytest.raises(HttpResponseError) as err:
        keys.import_key(kname(), jwk)
    assert err.value.status_code == 400
    # public-only key
    r = raw.put(f"/keys/{kname()}", json={"key": {"kty": "RSA", "n": b64url(b"\x01" * 256),
                                                   "e": "AQAB"}})
    assert_kv_error(r, 400, "BadParameter")


@pytest.mark.parametrize("crv", list(CURVES))
def test_import_ec_round_trip(keys, server, cred, crv):
    curve_cls, size, alg, bits = CURVES[crv]
    private = ec.generate_private_key(curve_cls())
    nums = private.private_numbers()
    jwk = JsonWebKey(kty="EC", crv=crv, d=nums.private_value.to_bytes(size, "big"),
                     x=nums.public_numbers.x.to_bytes(size, "big"),
                     y=nums.public_numbers.y.to_bytes(size, "big"))
    imported = keys.import_key(kname(), jwk)
    assert imported.key.x == jwk.x and imported.key.y == jwk.y and imported.key.d is None
    chash, hfun = HASHES[bits]
    digest = hfun(b"imported ec").digest()
    sig = crypto(server, cred, imported).sign(alg, digest).signature
    r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
    private.public_key().verify(utils.encode_dss_signature(r, s), digest,
                                ec.ECDSA(utils.Prehashed(chash())))


def test_import_ec_mismatched_point_rejected(raw):
    a = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    b = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    body = {"key": {"kty": "EC", "crv": "P-256", "d": b64url(a.private_value.to_bytes(32, "big")),
                    "x": b64url(b.public_numbers.x.to_bytes(32, "big")),
                    "y": b64url(b.public_numbers.y.to_bytes(32, "big"))}}
    assert_kv_error(raw.put(f"/keys/{kname()}", json=body), 400, "BadParameter")


# ------------------------------------------------------------------ key state and key_ops
def test_key_ops_restrict_operations(keys, raw):
    name = kname()
    keys.create_rsa_key(name, key_operations=["sign", "verify"])
    digest = b64url(hashlib.sha256(b"x").digest())
    assert raw.post(f"/keys/{name}/sign", json={"alg": "RS256", "value": digest}).status_code == 200
    assert_kv_error(raw.post(f"/keys/{name}/decrypt", json={"alg": "RSA-OAEP",
                                                           "value": b64url(os.urandom(256))}),
                    403, "Forbidden", "KeyOperationForbidden")
    assert_kv_error(raw.post(f"/keys/{name}/wrapkey", json={"alg": "RSA-OAEP",
                                                           "value": b64url(os.urandom(32))}),
                    403, "Forbidden", "KeyOperationForbidden")


def test_disabled_expired_and_not_yet_valid_keys(keys, raw):
    digest = b64url(hashlib.sha256(b"x").digest())
    name = kname()
    keys.create_ec_key(name, curve="P-256", enabled=False)
    assert_kv_error(raw.post(f"/keys/{name}/sign", json={"alg": "ES256", "value": digest}), 403,
                    "Forbidden", "KeyDisabled")
    # A disabled key can still be read (metadata and public JWK).
    assert raw.get(f"/keys/{name}/").status_code == 200

    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    name = kname()
    keys.create_ec_key(name, curve="P-256", expires_on=past)
    assert_kv_error(raw.post(f"/keys/{name}/sign", json={"alg": "ES256", "value": digest}), 403,
                    "Forbidden", "KeyExpired")

    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    name = kname()
    keys.create_ec_key(name, curve="P-256", not_before=future)
    assert_kv_error(raw.post(f"/keys/{name}/sign", json={"alg": "ES256", "value": digest}), 403,
                    "Forbidden", "KeyNotYetValid")


def test_key_validity_and_disabling_apply_to_every_operation(keys, raw):
    """Outside its validity a key still decrypts, unwraps and verifies what it made before (so
    data sealed under it stays readable), and refuses to encrypt, wrap and sign; disabled, it
    refuses all six."""
    name = kname()
    keys.create_rsa_key(name, size=2048)
    digest = b64url(hashlib.sha256(b"validity").digest())
    plain = b64url(os.urandom(32))

    def op(path, **body):
        return raw.post(f"/keys/{name}/{path}", json=body)

    made = {
        "encrypt": op("encrypt", alg="RSA-OAEP-256", value=plain),
        "wrapkey": op("wrapkey", alg="RSA-OAEP-256", value=plain),
        "sign": op("sign", alg="PS256", value=digest),
    }
    for path, r in made.items():
        assert r.status_code == 200, (path, r.text)
    reads = {
        "decrypt": dict(alg="RSA-OAEP-256", value=made["encrypt"].json()["value"]),
        "unwrapkey": dict(alg="RSA-OAEP-256", value=made["wrapkey"].json()["value"]),
        "verify": dict(alg="PS256", digest=digest, value=made["sign"].json()["value"]),
    }
    makes = {"encrypt": dict(alg="RSA-OAEP-256", value=plain),
             "wrapkey": dict(alg="RSA-OAEP-256", value=plain),
             "sign": dict(alg="PS256", value=digest)}

    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    for attributes, code in ((dict(expires_on=past), "KeyExpired"), (dict(not_before=future), "KeyNotYetValid")):
        keys.update_key_properties(name, expires_on=attributes.get("expires_on"),
                                   not_before=attributes.get("not_before"))
        for path, body in makes.items():
            assert_kv_error(op(path, **body), 403, "Forbidden", code)
        for path, body in reads.items():
            r = op(path, **body)
            assert r.status_code == 200, (code, path, r.text)
        assert op("decrypt", **reads["decrypt"]).json()["value"] == plain
        assert op("unwrapkey", **reads["unwrapkey"]).json()["value"] == plain
        assert op("verify", **reads["verify"]).json()["value"] is True
        # Back to valid before the next case (an unset date stays as it was: set wide ones).
        keys.update_key_properties(name, expires_on=future, not_before=past)

    keys.update_key_properties(name, enabled=False)
    for path, body in {**makes, **reads}.items():
        assert_kv_error(op(path, **body), 403, "Forbidden", "KeyDisabled")


def test_key_attestation_is_refused_clearly(keys, raw):
    """`GET /keys/{name}/{version}/attestation` is for Managed HSM keys: an existing key gets a
    400 that says so, a missing one the usual 404."""
    name = kname()
    version = keys.create_ec_key(name, curve="P-256").properties.version
    r = raw.get(f"/keys/{name}/{version}/attestation")
    assert_kv_error(r, 400, "BadParameter")
    assert "Managed HSM" in r.json()["error"]["message"]
    assert_kv_error(raw.get(f"/keys/{kname()}/{version}/attestation"), 404, "KeyNotFound")


def test_crypto_user_cannot_create_keys(server, keys):
    principal = server.create_principal()
    server.assign_role(principal["client_id"], "Key Vault Crypto User", "demo")
    cred = server.credential(principal["client_id"], principal["client_secret"])
    client = KeyClient(server.vault_url("demo"), cred, connection_verify=server.ca)
    with pytest.raises(HttpResponseError) as err:
        client.create_ec_key(kname(), curve="P-256")
    assert err.value.status_code == 403
    key = keys.create_ec_key(kname(), curve="P-256")
    digest = hashlib.sha256(b"rbac").digest()
    sig = CryptographyClient(key.id, cred, connection_verify=server.ca).sign(
        SignatureAlgorithm.es256, digest).signature
    assert len(sig) == 64


# ------------------------------------------------------------------ rotation, policy, rng
def test_rotate_keeps_parameters(keys):
    name = kname()
    first = keys.create_ec_key(name, curve="P-384", key_operations=["sign", "verify"], tags={"t": "1"})
    rotated = keys.rotate_key(name)
    assert rotated.properties.version != first.properties.version
    assert rotated.key.crv == "P-384" and rotated.key.x != first.key.x
    assert rotated.key_operations == ["sign", "verify"]
    assert keys.get_key(name).properties.version == rotated.properties.version
    rsa_name = kname()
    keys.create_rsa_key(rsa_name, size=3072)
    assert len(keys.rotate_key(rsa_name).key.n) == 384


def test_rotation_policy(keys):
    name = kname()
    keys.create_rsa_key(name)
    default = keys.get_key_rotation_policy(name)
    assert default.lifetime_actions
    policy = KeyRotationPolicy(expires_in="P90D", lifetime_actions=[
        KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D"),
        KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_before_expiry="P10D")])
    stored = keys.update_key_rotation_policy(name, policy)
    assert stored.expires_in == "P90D"
    actions = {a.action: a for a in stored.lifetime_actions}
    assert actions[KeyRotationPolicyAction.rotate].time_after_create == "P30D"
    assert actions[KeyRotationPolicyAction.notify].time_before_expiry == "P10D"
    fetched = keys.get_key_rotation_policy(name)
    assert fetched.expires_in == "P90D" and len(fetched.lifetime_actions) == 2
    # Rotation applies the policy's expiry to the new version.
    rotated = keys.rotate_key(name)
    assert rotated.properties.expires_on is not None
    delta = rotated.properties.expires_on - rotated.properties.created_on
    assert abs(delta.total_seconds() - 90 * 86400) < 5


def test_rotation_policy_validation(keys):
    name = kname()
    keys.create_rsa_key(name)
    short = KeyRotationPolicy(expires_in="P10D", lifetime_actions=[])
    with pytest.raises(HttpResponseError) as err:
        keys.update_key_rotation_policy(name, short)
    assert err.value.status_code == 400
    bad = KeyRotationPolicy(lifetime_actions=[
        KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="thirty days")])
    with pytest.raises(HttpResponseError):
        keys.update_key_rotation_policy(name, bad)
    with pytest.raises(ResourceNotFoundError):
        keys.get_key_rotation_policy(kname())


def test_random_bytes(keys, raw):
    a = keys.get_random_bytes(32)
    b = keys.get_random_bytes(32)
    assert len(a) == 32 and a != b
    assert len(keys.get_random_bytes(128)) == 128
    assert_kv_error(raw.post("/rng", json={"count": 0}), 400, "BadParameter")
    assert_kv_error(raw.post("/rng", json={"count": 129}), 400, "BadParameter")


def test_private_material_not_in_data_dir(fresh_server):
    """Key material never reaches the disk in plaintext: import a key with a known scalar and
    scan every file under the data directory for it."""
    kc = KeyClient(fresh_server.vault_url("demo"), fresh_server.credential(),
                   connection_verify=fresh_server.ca)
    k = os.urandom(32)
    kc.import_key(kname(), JsonWebKey(kty="oct", k=k))
    private = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    d = private.private_value.to_bytes(32, "big")
    kc.import_key(kname(), JsonWebKey(kty="EC", crv="P-256", d=d,
                                      x=private.public_numbers.x.to_bytes(32, "big"),
                                      y=private.public_numbers.y.to_bytes(32, "big")))
    fresh_server.stop()
    for path in fresh_server.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert k not in data and d not in data, path
            assert b64url(k).encode() not in data and b64url(d).encode() not in data, path


def test_rsa_4096_generation_does_not_stall_other_requests(keys, raw):
    """Key generation runs on blocking threads behind a semaphore: reads go on meanwhile.

    Three RSA-4096 generations at once would occupy both async workers of a 2-core machine if
    they ran on them, and no read would finish until one generation ended. So reads are sent for
    as long as the generations run (bounded), and enough of them must finish while all three
    are still in progress, none slowly."""
    import threading
    import time

    name = kname()
    keys.create_ec_key(name, curve="P-256")
    done = []

    def generate():
        keys.create_rsa_key(kname(), size=4096)
        done.append(time.monotonic())

    threads = [threading.Thread(target=generate) for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    finished_reads = []  # (finish time, latency)
    deadline = started + 120
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        start = time.monotonic()
        assert raw.get(f"/keys/{name}/").status_code == 200
        finished_reads.append((time.monotonic(), time.monotonic() - start))
    for t in threads:
        t.join(timeout=120)
    assert len(done) == 3
    first_done = min(done)
    during = [lat for at, lat in finished_reads if at < first_done]
    # RSA-4096 generation takes hundreds of milliseconds at least; reads take a few.
    assert len(during) >= 5, (first_done - started, len(during))
    assert max(lat for _, lat in finished_reads) < 2.0, finished_reads


def test_key_scoped_encryption_user(server, keys):
    """Key Vault Crypto Service Encryption User on one key: wrap/unwrap that key, nothing else."""
    name = kname()
    key = keys.create_rsa_key(name)
    other = keys.create_rsa_key(kname())
    principal = server.create_principal()
    server.assign_role(principal["client_id"], "Key Vault Crypto Service Encryption User", "demo",
                       f"/keys/{name}")
    cred = server.credential(principal["client_id"], principal["client_secret"])
    client = CryptographyClient(key.id, cred, connection_verify=server.ca)
    cek = os.urandom(32)
    wrapped = client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, cek)
    assert client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == cek
    with pytest.raises(HttpResponseError) as err:
        client.sign(SignatureAlgorithm.rs256, hashlib.sha256(b"x").digest())
    assert err.value.status_code == 403
    other_client = CryptographyClient(other.id, cred, connection_verify=server.ca)
    with pytest.raises(HttpResponseError) as err:
        other_client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert err.value.status_code == 403
