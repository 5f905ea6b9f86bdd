"""The built collection tarball carries no generated state and no private key.

A staged copy of the working tree gets the kind of leftovers a user or developer run leaves behind (rendered
kubeconfigs under out/ at the root and under playbooks/out/, the old user_access default, key files, an embedded
store), then the real ``ansible-galaxy collection build`` runs on it with the repository's galaxy.yml.
"""

import base64
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PEM_KEY = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----\s+[A-Za-z0-9+/=\s]+?-----END \1PRIVATE KEY-----")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{60,}={0,2}")

# Leftovers planted in the staged copy: relative path -> what it holds.
LEFTOVERS = {
    "out/alice.kubeconfig": "kubeconfig",
    "out/store.db": "pem",
    "out/demo-inventory.ini": "text",
    "playbooks/out/bob.kubeconfig": "kubeconfig",
    "playbooks/out/bob.key": "pem",
    "roles/user_access/out/carol.kubeconfig": "kubeconfig",
    "playbooks/dave.kubeconfig": "kubeconfig",
    "playbooks/store.db": "pem",
    "erin.key": "pem",
    "tests/unit/.pytest_cache/v/cache/lastfailed": "text",
}

SKIP_DIRS = {".git", ".venv", ".cache", "dist", "out", "__pycache__", ".pytest_cache", ".ansible"}


def _key_pem():
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def _fake(kind):
    pem = _key_pem()
    if kind == "pem":
        return pem
    if kind == "kubeconfig":
        return ("apiVersion: v1\nkind: Config\nusers:\n- name: someone\n  user:\n    client-key-data: %s\n"
                % base64.b64encode(pem.encode("ascii")).decode("ascii"))
    return "generated\n"


def _stage(dest):
    """A copy of the working tree without the developer's own generated state."""
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        rel = os.path.relpath(root, REPO)
        target = os.path.join(dest, rel) if rel != "." else dest
        os.makedirs(target, exist_ok=True)
        for name in files:
            if name.endswith((".tar.gz", ".pyc")):
                continue
            source = os.path.join(root, name)
            if os.path.islink(source):
                continue
            shutil.copy2(source, os.path.join(target, name))


def _private_keys_in(text):
    """Where ``text`` holds a PEM private key, as is or base64-encoded (kubeconfig client-key-data)."""
    found = [match.group(0)[:40] for match in PEM_KEY.finditer(text)]
    for run in BASE64_RUN.findall(text):
        try:
            decoded = base64.b64decode(run + "=" * (-len(run) % 4)).decode("ascii", errors="replace")
        except ValueError:
            continue
        found.extend("base64 of " + match.group(0)[:40] for match in PEM_KEY.finditer(decoded))
    return found


def test_detector_finds_planted_keys():
    """The checks below would see a key: the detector finds both planted forms and nothing in plain code."""
    assert _private_keys_in(_fake("pem"))
    assert _private_keys_in(_fake("kubeconfig"))
    assert not _private_keys_in('if "PRIVATE KEY-----" not in pem:\n    raise ValueError("-----BEGIN PRIVATE KEY-----")\n')


def test_built_tarball_has_no_out_dir_and_no_private_key(tmp_path):
    stage = tmp_path / "stage"
    _stage(str(stage))
    for rel, kind in LEFTOVERS.items():
        path = stage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fake(kind))
    dist = tmp_path / "dist"
    galaxy = os.path.join(os.path.dirname(sys.executable), "ansible-galaxy")
    proc = subprocess.run([galaxy, "collection", "build", str(stage), "--output-path", str(dist)], capture_output=True, text=True,
                          env=dict(os.environ, ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp")),
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarballs = list(dist.glob("kubepki-certs-*.tar.gz"))
    assert len(tarballs) == 1, list(dist.iterdir())

    with tarfile.open(str(tarballs[0])) as archive:
        members = archive.getmembers()
        names = [member.name.lstrip("./") for member in members]
        # the build did include the collection itself
        for expected in ("MANIFEST.json", "playbooks/onboard_users.yml", "roles/user_access/tasks/main.yml",
                         "plugins/modules/user_certificates.py"):
            assert expected in names, expected
        out_members = [name for name in names if "out" in name.split("/")]
        assert out_members == [], out_members
        leftovers = [name for name in names if name in LEFTOVERS]
        assert leftovers == [], leftovers
        keys = {}
        for member in members:
            if not member.isfile():
                continue
            text = archive.extractfile(member).read().decode("utf-8", errors="replace")
            found = _private_keys_in(text)
            if found:
                keys[member.name] = found
        assert keys == {}, keys


def test_role_default_writes_kubeconfigs_outside_the_collection(sandbox, run_playbook, tmp_path):
    """The collection's onboard_users playbook with the role's default output dir: the kubeconfigs go to
    ~/.kubepki/kubeconfigs of the user running it (0700 directories, 0600 files), nothing under playbooks/."""
    home = tmp_path / "home"
    home.mkdir()
    user = "outside-%d" % os.getpid()
    hosts = {name: {"user_access_kubeconfig": sandbox.cluster(name).kubeconfig, "user_access_ca_cert": sandbox.cluster(name).ca_cert,
                    "user_access_server": sandbox.cluster(name).server} for name in sandbox.names}
    extra = {"onboard_hosts": "all", "onboard_users": [{"name": user, "groups": ["dev"]}],
             "user_access_store_uri": str(tmp_path / "store.db"), "user_access_etcd_endpoints": [sandbox.etcd_url]}
    before = sorted(os.walk(os.path.join(REPO, "playbooks")))
    result = run_playbook("- ansible.builtin.import_playbook: %s\n" % os.path.join(REPO, "playbooks", "onboard_users.yml"),
                          extra_vars=extra, hosts=hosts, env={"HOME": str(home)})
    assert result.rc == 0, result
    assert sorted(os.walk(os.path.join(REPO, "playbooks"))) == before
    written = home / ".kubepki" / "kubeconfigs" / ("%s.kubeconfig" % user)
    assert written.is_file()
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    for directory in (home / ".kubepki", home / ".kubepki" / "kubeconfigs"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
    assert _private_keys_in(written.read_text())
