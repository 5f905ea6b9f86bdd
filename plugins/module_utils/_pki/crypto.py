# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs: this module_utils file may change in any release.

"""Keys, PKCS#10 requests and certificate facts, built on ``cryptography``.

Everything here is pure: PEM text in, PEM text or plain dicts out. Timestamps are RFC 3339 UTC strings
at second precision (``2025-01-02T03:04:05Z``), the form the Kubernetes API uses.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress

from ansible_collections.kubepki.certs.plugins.module_utils import _secrets
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError
from ansible_collections.kubepki.certs.plugins.module_utils._files import read_regular_file

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import NameOID
except ImportError:  # pragma: no cover - reported by _deps.require()
    pass

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
DEFAULT_KEY_TYPE = "ec-p256"


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def rfc3339(moment):
    """``moment`` (an aware or naive-UTC datetime) as ``YYYY-MM-DDTHH:MM:SSZ``."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text):
    """The aware UTC datetime of an RFC 3339 string; raises KubePkiError when it is not one."""
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise KubePkiError("not an RFC 3339 timestamp: %r" % (text,)) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


# ---------------------------------------------------------------- keys

def check_key_type(key_type):
    """KubePkiError unless ``key_type`` is one of KEY_TYPES."""
    if key_type not in KEY_TYPES:
        raise KubePkiError("key_type %r is not supported; choose one of %s" % (key_type, ", ".join(KEY_TYPES)))


def generate_private_key(key_type=DEFAULT_KEY_TYPE):
    """A new private key of ``key_type`` (one of KEY_TYPES)."""
    check_key_type(key_type)
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.split("-")[1]))  # rsa-<bits>


def key_type_of(private_or_public_key):
    """The KEY_TYPES name of a key object; KubePkiError for anything else."""
    key = private_or_public_key
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        name = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(key.curve.name)
    elif isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        name = "rsa-%d" % key.key_size
    else:
        name = None
    if name not in KEY_TYPES:
        raise KubePkiError("unsupported key (%s); supported key types: %s" % (type(key).__name__, ", ".join(KEY_TYPES)))
    return name


def private_key_to_pem(private_key, passphrase=None):
    """PKCS#8 PEM text, encrypted with ``passphrase`` when one is given."""
    if passphrase:
        encryption = serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
    else:
        encryption = serialization.NoEncryption()
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode("ascii")


def load_private_key(pem, passphrase=None, what="private key"):
    """Load PEM text (PKCS#8, SEC1 or PKCS#1), decrypting with ``passphrase`` when it is encrypted.

    Every key loaded here comes from the credential store, which made it: the RSA consistency checks (some 80 ms
    for each RSA-2048 key, minutes for a batch) are skipped."""
    if not isinstance(pem, str) or "PRIVATE KEY-----" not in pem:
        raise KubePkiError("%s is not a PEM private key" % what)
    password = passphrase.encode("utf-8") if passphrase else None
    try:
        return serialization.load_pem_private_key(pem.encode("ascii"), password=password, unsafe_skip_rsa_key_validation=True)
    except TypeError as exc:
        if password is None:
            raise KubePkiError("%s is encrypted: give its passphrase" % what) from exc
        raise KubePkiError("%s is not encrypted, but a passphrase was given" % what) from exc
    except ValueError as exc:
        if password is not None:
            raise KubePkiError("%s cannot be decrypted: wrong passphrase or damaged key" % what) from exc
        raise KubePkiError("%s cannot be parsed: %s" % (what, exc)) from exc


def public_key_sha256(key):
    """Hex SHA-256 of the DER SubjectPublicKeyInfo of a private or public key."""
    if hasattr(key, "public_key"):
        key = key.public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------- PKCS#10

def _name(common_name, organizations):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _sans(dns_names=(), ip_addresses=(), emails=(), uris=()):
    names = [x509.DNSName(name) for name in dns_names]
    for address in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            raise KubePkiError("ip_addresses: %r is not an IP address" % (address,)) from None
    names += [x509.RFC822Name(email) for email in emails]
    names += [x509.UniformResourceIdentifier(uri) for uri in uris]
    return names


def build_csr_pem(private_key, common_name, organizations=(), dns_names=(), ip_addresses=(), emails=(), uris=()):
    """A PEM ``CERTIFICATE REQUEST`` for CN=common_name, O=organizations (in order) and the given SANs."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name, organizations))
    names = _sans(dns_names, ip_addresses, emails, uris)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(private_key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _subject_facts(name):
    return {
        "common_name": next((a.value for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)), None),
        "organizations": [a.value for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)],
    }


def _san_facts(extensions):
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        # cryptography >= 51 refuses an empty SubjectAlternativeName: no extension means no names
        return {"dns_names": [], "ip_addresses": [], "emails": [], "uris": []}
    return {
        "dns_names": san.get_values_for_type(x509.DNSName),
        "ip_addresses": [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
        "emails": san.get_values_for_type(x509.RFC822Name),
        "uris": san.get_values_for_type(x509.UniformResourceIdentifier),
    }


def load_csr(pem, what="CSR"):
    """The cryptography CSR object of PEM text; KubePkiError when it is not a valid, self-signed request."""
    if not isinstance(pem, str) or "-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise KubePkiError("%s is not a PEM CERTIFICATE REQUEST" % what)
    if _secrets.holds_private_key(pem):
        # the text would be sent as it is (spec.request): the key must stay with its owner
        raise KubePkiError("%s holds a private key besides the CERTIFICATE REQUEST: give the request alone" % what)
    try:
        csr = x509.load_pem_x509_csr(pem.encode("ascii"))
    except ValueError as exc:
        raise KubePkiError("%s cannot be parsed: %s" % (what, exc)) from exc
    if not csr.is_signature_valid:
        raise KubePkiError("%s has an invalid signature" % what)
    return csr


def csr_facts(pem, what="CSR"):
    """Subject, SANs, key type and public key fingerprint of a PEM CSR (computed once per PEM, see _memoized)."""
    return _memoized(_csr_facts, pem, what)


# Subject attributes named in messages by what people call them (cryptography's RFC 4514 names cover fewer).
_ATTRIBUTE_NAMES = {"2.5.4.5": "serialNumber", "2.5.4.4": "surname", "2.5.4.42": "givenName", "2.5.4.12": "title",
                    "1.2.840.113549.1.9.1": "emailAddress", "1.3.6.1.4.1.57683.2": "the Kubernetes user UID attribute"}


def _attribute_name(attribute):
    dotted = attribute.oid.dotted_string
    return _ATTRIBUTE_NAMES.get(dotted) or attribute.rfc4514_attribute_name


def _request_view(csr):
    """The request as encoded, beyond what the other facts condense: every CN value in order, every other
    subject attribute (O aside), every extension, and SAN entries of kinds the facts do not list."""
    common_names, others = [], []
    for attribute in csr.subject:
        if attribute.oid == NameOID.COMMON_NAME:
            common_names.append(attribute.value)
        elif attribute.oid != NameOID.ORGANIZATION_NAME:
            value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
            others.append("%s=%s" % (_attribute_name(attribute), value))
    extensions, other_sans = [], []
    for extension in csr.extensions:
        entry = {"oid": extension.oid.dotted_string, "name": getattr(extension.oid, "_name", extension.oid.dotted_string),
                 "critical": extension.critical}
        if isinstance(extension.value, x509.BasicConstraints):
            entry["ca"] = extension.value.ca
        elif isinstance(extension.value, x509.SubjectAlternativeName):
            listed = (x509.DNSName, x509.IPAddress, x509.RFC822Name, x509.UniformResourceIdentifier)
            other_sans.extend(type(name).__name__ for name in extension.value if not isinstance(name, listed))
        extensions.append(entry)
    return {"common_names": common_names, "other_subject_attributes": others, "extensions": extensions, "other_sans": other_sans}


def _csr_facts(pem, what):
    csr = load_csr(pem, what)
    facts = _subject_facts(csr.subject)
    try:
        facts.update(_san_facts(csr.extensions))
        facts.update(_request_view(csr))
    except ValueError as exc:  # x509.DuplicateExtension is one
        raise KubePkiError("%s has extensions that cannot be parsed: %s" % (what, exc)) from exc
    public_key = csr.public_key()
    facts["key_type"] = key_type_of(public_key)
    facts["public_key_sha256"] = public_key_sha256(public_key)
    return facts


def csr_pem_from_api(request_b64):
    """The PEM text of a CSR object's ``spec.request`` (base64 of PEM, as the API returns it)."""
    try:
        return base64.b64decode(request_b64, validate=True).decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise KubePkiError("spec.request is not base64 of a PEM block: %s" % exc) from exc


# ---------------------------------------------------------------- certificates

def split_pem_certificates(text):
    """The PEM blocks of type CERTIFICATE in ``text``, in order (leaf first as the API returns them)."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.strip() == "-----BEGIN CERTIFICATE-----":
            current = [line.strip()]
        elif current is not None:
            current.append(line.strip())
            if line.strip() == "-----END CERTIFICATE-----":
                blocks.append("\n".join(current) + "\n")
                current = None
    return blocks


_PARSED = {}


def load_certificate(pem, what="certificate"):
    """The leaf (first) certificate of ``pem``, parsed once per process and PEM text (the objects are immutable)."""
    if isinstance(pem, str) and pem in _PARSED:
        return _PARSED[pem]
    blocks = split_pem_certificates(pem) if isinstance(pem, str) else []
    if not blocks:
        raise KubePkiError("%s is not a PEM CERTIFICATE" % what)
    try:
        cert = x509.load_pem_x509_certificate(blocks[0].encode("ascii"))
    except ValueError as exc:
        raise KubePkiError("%s cannot be parsed: %s" % (what, exc)) from exc
    _PARSED[pem] = cert
    return cert


_FACTS_CACHE = {}


def ca_pem(what, text=None, path=None):
    """The CA certificates a cluster is checked against, from PEM ``text`` or the file at ``path``: their CERTIFICATE
    blocks, each parsed, as one PEM text; None when neither is given. KubePkiError names ``what`` (the option)."""
    if path:
        try:
            text = read_regular_file(path, what).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KubePkiError("%s: cannot read %s: %s" % (what, path, getattr(exc, "strerror", None) or exc)) from None
    if text is None:
        return None
    blocks = split_pem_certificates(text)
    if not blocks:
        raise KubePkiError("%s%s holds no PEM CERTIFICATE" % (what, " (%s)" % path if path else ""))
    for block in blocks:
        load_certificate(block, what=what)
    return "".join(blocks)


def _memoized(compute, pem, what):
    """``compute(pem, what)`` once per process and PEM text: a batch meets the same certificate or request in
    several steps. Each call gets its own copy; a PEM that fails is not remembered and fails again."""
    if not isinstance(pem, str):
        return compute(pem, what)
    key = (compute, pem)
    if key not in _FACTS_CACHE:
        _FACTS_CACHE[key] = compute(pem, what)
    # facts hold strings, numbers and lists of strings: copying the lists is a full copy
    return {name: list(value) if isinstance(value, list) else value for name, value in _FACTS_CACHE[key].items()}


def certificate_facts(pem, what="certificate"):
    """Facts of the first (leaf) certificate in ``pem``: serial, validity, subject, SANs, key fingerprint
    (computed once per PEM, see _memoized)."""
    return _memoized(_certificate_facts, pem, what)


def _certificate_facts(pem, what):
    cert = load_certificate(pem, what)
    facts = _subject_facts(cert.subject)
    facts.update(_san_facts(cert.extensions))
    facts.update({
        "serial": format(cert.serial_number, "x"),
        "not_before": rfc3339(cert.not_valid_before_utc),
        "not_after": rfc3339(cert.not_valid_after_utc),
        "lifetime_seconds": int((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()),
        "issuer": cert.issuer.rfc4514_string(),
        "public_key_sha256": public_key_sha256(cert.public_key()),
        "key_type": key_type_of(cert.public_key()),
    })
    return facts


_VERIFIED = set()


def verify_issued_by(cert_pem, ca_pem, what="certificate"):
    """Raise KubePkiError unless the leaf of ``cert_pem`` is signed by one of the CA certificates in ``ca_pem``.

    A pair that passed is remembered for the process: the steps of a batch check the same certificates."""
    if (cert_pem, ca_pem) in _VERIFIED:
        return
    cert = load_certificate(cert_pem, what)
    cas = split_pem_certificates(ca_pem) if isinstance(ca_pem, str) else []
    if not cas:
        raise KubePkiError("the CA bundle given to check %s holds no PEM CERTIFICATE" % what)
    for block in cas:
        try:
            ca = load_certificate(block)
        except KubePkiError:
            continue
        if ca.subject != cert.issuer:
            continue
        if _signed_by(cert, ca.public_key()):
            _VERIFIED.add((cert_pem, ca_pem))
            return
    raise KubePkiError("%s (issuer %s) is not signed by the given cluster CA" % (what, cert.issuer.rfc4514_string()))


def _signed_by(cert, public_key):
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def b64(text):
    """Standard padded base64 (no line breaks) of UTF-8 text, as Kubernetes ``[]byte`` fields want it."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
