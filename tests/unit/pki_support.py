"""Certificates for the unit tests, made in this process with ``cryptography``.

The unit tier needs a few CAs and client certificates to feed the modules; it makes them here rather than through
the test harness (tests/harness/kubeharness/pki.py, which the built collection does not ship). Keys are EC P-256: quick
to make.

- ``new_ca(name)`` -> ``Pair(cert, key)``, a self-signed CA;
- ``client_cert(ca, name, groups, key=None, days=365)`` -> ``Pair(cert, key)``, a client certificate signed by ``ca``
  (subject O=<each group>, CN=<name>), for ``key`` or a new key;
- ``cert_pem(cert)`` / ``key_pem(key)`` -> PEM bytes.
"""

import collections
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Pair = collections.namedtuple("Pair", "cert key")

_BACKDATE = datetime.timedelta(minutes=5)  # tolerate a clock a little behind


def _key_usage(signs_certificates):
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=not signs_certificates,
                         data_encipherment=False, key_agreement=False, key_cert_sign=signs_certificates,
                         crl_sign=signs_certificates, encipher_only=False, decipher_only=False)


def _signed(subject, public_key, issuer, days, is_ca):
    """A certificate for ``public_key`` named ``subject``, signed by ``issuer`` (a Pair, or None: self-signed with the
    key in ``public_key``'s place, which then is the private key)."""
    private_key = public_key if issuer is None else issuer.key
    if issuer is None:
        public_key = public_key.public_key()
    issuer_name = subject if issuer is None else issuer.cert.subject
    start = datetime.datetime.now(datetime.timezone.utc) - _BACKDATE
    end = start + _BACKDATE + datetime.timedelta(days=days)
    if issuer is not None:
        end = min(end, issuer.cert.not_valid_after_utc)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer_name).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
               .add_extension(_key_usage(is_ca), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if not is_ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(private_key, hashes.SHA256())


def new_ca(name, days=3650):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return Pair(_signed(subject, key, None, days, is_ca=True), key)


def client_cert(ca, name, groups=(), key=None, days=365):
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
                        + [x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return Pair(_signed(subject, key.public_key(), ca, days, is_ca=False), key)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
