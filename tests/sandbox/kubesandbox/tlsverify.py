"""Request client certificates without failing the TLS handshake on untrusted ones.

kube-apiserver asks for a client certificate and verifies it in its x509 authenticator: a certificate
from another CA, or an expired one, gives a 401, not a handshake failure. Python's ``ssl`` cannot express
"request but accept anything", so this installs an always-accepting OpenSSL verify callback on the
context through ctypes (the ``SSL_CTX *`` sits right after the object header of ``ssl.SSLContext``), and
``verify_client`` checks the presented certificate the way the authenticator does. ``install`` returns
False (and leaves the context alone) when that is not possible; the server then keeps CERT_OPTIONAL.
"""

import ctypes
import ctypes.util
import datetime
import ssl
import sys

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SSL_VERIFY_PEER = 0x01
_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_KEEP = []


def _accept_all(_preverify_ok, _store_ctx):
    return 1


def _libssl():
    """The libssl the running interpreter's ``_ssl`` module is linked with."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 6 and "libssl.so" in fields[-1]:
                return ctypes.CDLL(fields[-1])
    name = ctypes.util.find_library("ssl")
    return ctypes.CDLL(name) if name else None


def install(context):
    """Make ``context`` request a client certificate and accept whatever is presented."""
    if sys.implementation.name != "cpython" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    try:
        lib = _libssl()
        if lib is None:
            return False
        context.verify_mode = ssl.CERT_OPTIONAL
        ctx_ptr = ctypes.c_void_p.from_address(id(context) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
        get_mode = lib.SSL_CTX_get_verify_mode
        get_mode.argtypes = [ctypes.c_void_p]
        get_mode.restype = ctypes.c_int
        if not ctx_ptr or get_mode(ctx_ptr) != SSL_VERIFY_PEER:
            return False
        callback = _CALLBACK_TYPE(_accept_all)
        _KEEP.append(callback)
        set_verify = lib.SSL_CTX_set_verify
        set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _CALLBACK_TYPE]
        set_verify.restype = None
        set_verify(ctx_ptr, SSL_VERIFY_PEER, callback)
        return True
    except (OSError, AttributeError, ValueError):
        return False


def verify_client(der, ca_cert):
    """(common_name, organizations) of a valid client certificate issued by ``ca_cert``, else None."""
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # pylint: disable=broad-except
        # malformed, another issuer, or a bad signature (cryptography.exceptions.InvalidSignature)
        return None
    now = datetime.datetime.now(datetime.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return None
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
            return None
    except x509.ExtensionNotFound:
        pass
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = names[-1].value if names else ""
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return common_name, orgs
