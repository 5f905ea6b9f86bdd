"""CertificateSigningRequest rules: validation (create/update), signer checks and certificate issuing."""

import base64
import datetime
import re
import secrets

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import FieldError

USAGES = sorted([
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
    "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
    "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc",
])
LEGACY = "kubernetes.io/legacy-unknown"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
                 "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
                 "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def go_bytes(data):
    return "[]byte{" + ", ".join("0x%x" % b for b in data) + "}"


def pem_blocks(data):
    """(type, headers_present, der) for each PEM block in ``data`` (bytes), like encoding/pem."""
    blocks = []
    text = data.decode("latin-1")
    pattern = re.compile(r"-----BEGIN ([^\n-]*)-----\r?\n(.*?)-----END \1-----", re.S)
    for match in pattern.finditer(text):
        body = match.group(2)
        headers = False
        lines = body.splitlines()
        if lines and ":" in lines[0]:
            headers = True
            while lines and lines[0].strip():
                lines.pop(0)
        try:
            der = base64.b64decode("".join(line.strip() for line in lines), validate=True)
        except ValueError:
            continue
        blocks.append((match.group(1), headers, der))
    return blocks


_PARSED = {}


def parse_csr(request):
    """Parse the PEM PKCS#10 request; raises ValueError with a Go-like message (results are memoized)."""
    cached = _PARSED.get(request)
    if cached is not None:
        if isinstance(cached, ValueError):
            raise cached
        return cached
    try:
        result = _parse_csr(request)
    except ValueError as exc:
        result = exc
    if len(_PARSED) > 4096:
        _PARSED.clear()
    _PARSED[request] = result
    if isinstance(result, ValueError):
        raise result
    return result


def _parse_csr(request):
    blocks = pem_blocks(request)
    if not blocks or blocks[0][0] != "CERTIFICATE REQUEST":
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        csr = x509.load_der_x509_csr(blocks[0][2])
    except ValueError as exc:
        raise ValueError("asn1: structure error: %s" % exc) from exc
    try:
        ok = csr.is_signature_valid
    except (ValueError, InvalidSignature, TypeError):
        ok = False
    if not ok:
        key = csr.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("x509: ECDSA verification failure")
        if isinstance(key, rsa.RSAPublicKey):
            raise ValueError("crypto/rsa: verification error")
        raise ValueError("x509: signature verification failure")
    return csr


def validate_signer_name(path, name):
    errs = []
    if not name:
        return [FieldError("FieldValueRequired", path, None, "signerName must be provided")]
    segments = name.split("/")
    if len(segments) != 2:
        return [FieldError("FieldValueInvalid", path, name,
                           "must be a fully qualified domain and path of the form 'example.com/signer-name'")]
    domain, rest = segments
    if len(domain) > 253:
        errs.append(FieldError("FieldValueTooLong", path, domain, "may not be more than 253 bytes"))
    labels = domain.split(".")
    for label in labels:
        problems = []
        if len(label) > 63:
            problems.append("must be no more than 63 characters")
        if not DNS_LABEL.match(label):
            problems.append(LABEL_MSG)
        if problems:
            for problem in problems:
                errs.append(FieldError("FieldValueInvalid", path, domain, 'validating label "%s": %s' % (label, problem)))
            break
    if len(labels) < 2:
        errs.append(FieldError("FieldValueInvalid", path, domain,
                               "should be a domain with at least two segments separated by dots"))
    for part in rest.split("."):
        problems = []
        if len(part) > 253:
            problems.append("must be no more than 253 characters")
        if not DNS_SUBDOMAIN.match(part):
            problems.append(SUBDOMAIN_MSG)
        for problem in problems:
            errs.append(FieldError("FieldValueInvalid", path, rest, 'validating component "%s": %s' % (part, problem)))
    if len(name) > 571:
        errs.append(FieldError("FieldValueTooLong", path, name, "may not be more than 571 bytes"))
    return errs


def validate_spec(spec):
    errs = []
    request = base64.b64decode(spec.get("request") or "")
    try:
        parse_csr(request)
    except ValueError as exc:
        errs.append(FieldError("FieldValueInvalid", "spec.request", request, str(exc), raw=go_bytes(request)))
    usages = spec.get("usages") or []
    if not usages:
        errs.append(FieldError("FieldValueRequired", "spec.usages", None, "usages must be provided"))
    for i, usage in enumerate(usages):
        if usage not in USAGES:
            errs.append(FieldError("FieldValueNotSupported", "spec.usages[%d]" % i, usage,
                                   "supported values: " + ", ".join('"%s"' % u for u in USAGES)))
    seen = set()
    for i, usage in enumerate(usages):
        if usage in seen:
            errs.append(FieldError("FieldValueDuplicate", "spec.usages[%d]" % i, usage, ""))
        seen.add(usage)
    signer = spec.get("signerName") or ""
    if signer == LEGACY:
        errs.append(FieldError("FieldValueInvalid", "spec.signerName", signer,
                               "the legacy signerName is not allowed via this API version"))
    else:
        errs.extend(validate_signer_name("spec.signerName", signer))
    if "expirationSeconds" in spec and spec["expirationSeconds"] < 600:
        errs.append(FieldError("FieldValueInvalid", "spec.expirationSeconds", spec["expirationSeconds"],
                               "may not specify a duration less than 600 seconds (10 minutes)"))
    return errs


def validate_status(status):
    errs = []
    conditions = (status or {}).get("conditions") or []
    seen = {}
    approved = denied = None
    for i, cond in enumerate(conditions):
        ctype, cstatus = cond.get("type", ""), cond.get("status", "")
        path = "status.conditions[%d]" % i
        if not ctype:
            errs.append(FieldError("FieldValueRequired", path + ".type", None, ""))
        if not cstatus:
            errs.append(FieldError("FieldValueRequired", path + ".status", None, ""))
        elif ctype in ("Approved", "Denied", "Failed"):
            if cstatus != "True":
                errs.append(FieldError("FieldValueNotSupported", path + ".status", cstatus, 'supported values: "True"'))
        elif cstatus not in ("True", "False", "Unknown"):
            errs.append(FieldError("FieldValueNotSupported", path + ".status", cstatus,
                                   'supported values: "False", "True", "Unknown"'))
        if ctype in seen:
            errs.append(FieldError("FieldValueDuplicate", path + ".type", ctype, ""))
        seen[ctype] = i
        if ctype == "Approved":
            approved = i
        if ctype == "Denied":
            denied = i
    if approved is not None and denied is not None:
        errs.append(FieldError("FieldValueInvalid", "status.conditions[%d].type" % max(approved, denied),
                               "Denied" if denied > approved else "Approved",
                               "Approved and Denied conditions are mutually exclusive"))
    cert_b64 = (status or {}).get("certificate")
    if cert_b64:
        data = base64.b64decode(cert_b64)
        blocks = pem_blocks(data)
        msg = None
        if not blocks:
            msg = "must contain at least one CERTIFICATE PEM block"
        for btype, headers, der in blocks:
            if btype != "CERTIFICATE":
                msg = 'only CERTIFICATE PEM blocks are allowed, found "%s"' % btype
                break
            if headers:
                msg = "no PEM block headers are permitted"
                break
            try:
                x509.load_der_x509_certificate(der)
            except ValueError as exc:
                msg = "x509: malformed certificate: %s" % exc
                break
        if msg:
            errs.append(FieldError("FieldValueInvalid", "status.certificate", None, msg, raw="<certificate data>"))
    return errs


def count_types(conditions, ctype):
    return sum(1 for c in conditions or [] if c.get("type") == ctype)


# --- signer ----------------------------------------------------------------------------------------

KEY_USAGE_BITS = {
    "signing": "digital_signature", "digital signature": "digital_signature",
    "content commitment": "content_commitment", "key encipherment": "key_encipherment",
    "key agreement": "key_agreement", "data encipherment": "data_encipherment", "cert sign": "key_cert_sign",
    "crl sign": "crl_sign", "encipher only": "encipher_only", "decipher only": "decipher_only",
}
EXT_USAGES = [
    ("any", ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE), ("server auth", ExtendedKeyUsageOID.SERVER_AUTH),
    ("client auth", ExtendedKeyUsageOID.CLIENT_AUTH), ("code signing", ExtendedKeyUsageOID.CODE_SIGNING),
    ("email protection", ExtendedKeyUsageOID.EMAIL_PROTECTION), ("s/mime", ExtendedKeyUsageOID.EMAIL_PROTECTION),
    ("ipsec end system", x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5")),
    ("ipsec tunnel", x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6")),
    ("ipsec user", x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7")),
    ("timestamping", ExtendedKeyUsageOID.TIME_STAMPING), ("ocsp signing", ExtendedKeyUsageOID.OCSP_SIGNING),
    ("microsoft sgc", x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3")),
    ("netscape sgc", x509.ObjectIdentifier("2.16.840.1.113730.4.1")),
]


def _sans(csr):
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], [], []
    return (ext.get_values_for_type(x509.DNSName), ext.get_values_for_type(x509.RFC822Name),
            ext.get_values_for_type(x509.IPAddress), ext.get_values_for_type(x509.UniformResourceIdentifier))


def _orgs(csr):
    return [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def _cn(csr):
    attrs = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return attrs[-1].value if attrs else ""


def signer_check(signer, csr, usages):
    """None when the signer accepts the request, else the SignerValidationFailure message."""
    usage_set = set(usages)
    if signer == "kubernetes.io/kube-apiserver-client":
        for usage in usages:
            if usage not in ("digital signature", "key encipherment", "client auth"):
                return "invalid usage for client certificate: %s" % usage
        if "client auth" not in usage_set:
            return "missing required usage for client certificate: client auth"
        return None
    if signer == "kubernetes.io/kube-apiserver-client-kubelet":
        if _orgs(csr) != ["system:nodes"]:
            return "subject organization is not system:nodes"
        dns, email, ips, uris = _sans(csr)
        for values, label in ((dns, "DNS"), (email, "Email"), (ips, "IP"), (uris, "URI")):
            if values:
                return "%s subjectAltNames are not allowed" % label
        if not _cn(csr).startswith("system:node:"):
            return "subject common name does not begin with system:node:"
        if usage_set not in ({"digital signature", "client auth"},
                             {"digital signature", "key encipherment", "client auth"}):
            return "usages did not match [client auth digital signature key encipherment]"
        return None
    if signer == "kubernetes.io/kubelet-serving":
        if _orgs(csr) != ["system:nodes"]:
            return "subject organization is not system:nodes"
        dns, email, ips, uris = _sans(csr)
        if not dns and not ips:
            return "DNS or IP subjectAltName is required"
        if email:
            return "Email subjectAltNames are not allowed"
        if uris:
            return "URI subjectAltNames are not allowed"
        if usage_set not in ({"digital signature", "server auth"},
                             {"digital signature", "key encipherment", "server auth"}):
            return "usages did not match [digital signature key encipherment server auth]"
        if not _cn(csr).startswith("system:node:"):
            return "subject common name does not begin with system:node:"
        return None
    return None


def kubelet_client_ok(csr_obj):
    spec = csr_obj["spec"]
    try:
        csr = parse_csr(base64.b64decode(spec.get("request") or ""))
    except ValueError:
        return None
    if signer_check("kubernetes.io/kube-apiserver-client-kubelet", csr, spec.get("usages") or []) is not None:
        return None
    return csr


def _go_string_attr(oid, value):
    printable = re.match(r"^[A-Za-z0-9 '()+,\-./:=?]*$", value) is not None
    kind = x509.name._ASN1Type.PrintableString if printable else x509.name._ASN1Type.UTF8String  # pylint: disable=protected-access
    return x509.NameAttribute(oid, value, _type=kind)


def go_subject(name):
    """Re-encode a parsed subject the way Go's pkix.Name.ToRDNSequence does (fields in Go order)."""
    order = [NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME, NameOID.STREET_ADDRESS,
             NameOID.POSTAL_CODE, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME]
    rdns = []
    for oid in order:
        values = [a.value for a in name.get_attributes_for_oid(oid) if isinstance(a.value, str)]
        if values:
            unique = []
            for value in values:
                if value not in unique:
                    unique.append(value)
            rdns.append(x509.RelativeDistinguishedName([_go_string_attr(oid, v) for v in unique]))
    for oid in (NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER):
        values = [a.value for a in name.get_attributes_for_oid(oid) if isinstance(a.value, str)]
        if values and values[-1]:
            rdns.append(x509.RelativeDistinguishedName([_go_string_attr(oid, values[-1])]))
    return x509.Name(rdns)


def parse_duration(text):
    """A Go duration string ("8760h", "1h30m", "90s", "0") in seconds (float)."""
    if isinstance(text, (int, float)):
        return float(text)
    text = str(text).strip()
    if text in ("0", ""):
        return 0.0
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    pos = 0
    for match in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text):
        if match.start() != pos:
            raise ValueError("invalid duration %r" % text)
        total += float(match.group(1)) * units[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError("invalid duration %r" % text)
    return total


def issue_certificate(ca_cert, ca_key, csr, usages, expiration_seconds, signing_duration, now=None):
    """PEM of the leaf certificate the kube-controller-manager signer would issue."""
    now = (now or datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0)
    ttl = datetime.timedelta(seconds=signing_duration)
    if expiration_seconds is not None:
        requested = datetime.timedelta(seconds=expiration_seconds)
        if requested > ttl:
            pass
        elif requested < datetime.timedelta(minutes=10):
            ttl = datetime.timedelta(minutes=10)
        else:
            ttl = requested
    backdate = datetime.timedelta(minutes=5)
    not_before = now - backdate
    if ttl < datetime.timedelta(hours=8):
        not_after = now + ttl
    else:
        not_after = now + ttl - backdate
    ca_not_after = ca_cert.not_valid_after_utc
    if not_after >= ca_not_after:
        not_after = ca_not_after
    if not_before >= ca_not_after or now >= ca_not_after:
        raise RuntimeError("the signer has expired: NotAfter=%s" % ca_not_after)
    builder = (
        x509.CertificateBuilder()
        .serial_number(secrets.randbelow((1 << 128) - 1) + 1)
        .issuer_name(ca_cert.subject)
        .subject_name(go_subject(csr.subject))
        .public_key(csr.public_key())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    bits = {v: False for v in set(KEY_USAGE_BITS.values())}
    any_bit = False
    for usage in usages:
        if usage in KEY_USAGE_BITS:
            bits[KEY_USAGE_BITS[usage]] = True
            any_bit = True
    if any_bit:
        builder = builder.add_extension(x509.KeyUsage(**bits), critical=True)
    ext = []
    for name, oid in EXT_USAGES:
        if name in usages and oid not in ext:
            ext.append(oid)
    if ext:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ext), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
    except x509.ExtensionNotFound:
        pass
    dns, email, ips, uris = _sans(csr)
    names = [x509.DNSName(v) for v in dns] + [x509.RFC822Name(v) for v in email]
    names += [x509.IPAddress(v) for v in ips] + [x509.UniformResourceIdentifier(v) for v in uris]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=len(csr.subject) == 0)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)
