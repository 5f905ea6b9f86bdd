"""Owner, group and mode of the kubeconfig files users receive, through playbooks/onboard_users.yml (the user_access
role) against the two clusters under test (the sandbox, or real ones with KUBEPKI_TEST_CLUSTERS=real), real etcd and
the embedded store.

Run as root: the files are given to ``nobody``/``nogroup``, and that user then logs in with kubectl.
"""

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ONBOARD = os.path.join(REPO, "playbooks", "onboard_users.yml")
USER = {"name": "kf-alice", "groups": ["dev"]}
JOB_TASK = "Issue the users' certificates in every cluster and render their kubeconfigs"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="giving files to another user needs root (and runuser)")


def job_result(result):
    for task in result.tasks():
        if task["task"]["name"].endswith(JOB_TASK):
            return next(iter(task["hosts"].values()))
    raise AssertionError("no job task among %s" % [task["task"]["name"] for task in result.tasks()])


@pytest.fixture
def setup(sandbox, tmp_path):
    # a directory that nobody may pass through (not pytest's 0700 tmp_path), so that nobody can read what is theirs
    base = tempfile.mkdtemp(prefix="kubepki-files-", dir="/tmp")
    os.chmod(base, 0o711)
    out = os.path.join(base, "out")
    os.mkdir(out, 0o711)
    os.chmod(out, 0o711)
    scope = "kf-" + uuid.uuid4().hex[:8]
    hosts = {name: {"user_access_kubeconfig": sandbox.cluster(name).kubeconfig, "user_access_ca_cert": sandbox.cluster(name).ca_cert,
                    "user_access_server": sandbox.cluster(name).server} for name in sandbox.names}
    extra = {"onboard_hosts": "all", "onboard_users": [USER], "user_access_scope": scope,
             "user_access_store_uri": str(tmp_path / "store.db"), "user_access_output_dir": out,
             "user_access_etcd_endpoints": [sandbox.etcd_url], "user_access_etcd_prefix": "/" + scope}
    yield {"hosts": hosts, "extra": extra, "path": os.path.join(out, "%s.kubeconfig" % USER["name"]), "home": base}
    shutil.rmtree(base, ignore_errors=True)


def attributes(path):
    seen = os.stat(path)
    return pwd.getpwuid(seen.st_uid).pw_name, grp.getgrgid(seen.st_gid).gr_name, "%04o" % (seen.st_mode & 0o7777)


def as_nobody(path, cluster):
    """kubectl run as ``nobody`` with the kubeconfig: ``(returncode, stdout + stderr)``."""
    home = tempfile.mkdtemp(prefix="kubepki-nobody-", dir="/tmp")
    os.chown(home, pwd.getpwnam("nobody").pw_uid, -1)
    try:
        proc = subprocess.run(["runuser", "-u", "nobody", "--", "kubectl", "--kubeconfig", path, "--context", "%s@%s" % (USER["name"], cluster),
                               "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
                              capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ, HOME=home))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return proc.returncode, proc.stdout + proc.stderr


def onboard(run_playbook, setup, extra, check=False, diff=False):
    return run_playbook("- ansible.builtin.import_playbook: %s\n" % ONBOARD, extra_vars=dict(setup["extra"], **extra), hosts=setup["hosts"],
                        check=check, diff=diff)


def test_the_kubeconfig_files_take_owner_group_and_mode(run_playbook, sandbox, setup):
    files = {"user_access_kubeconfig_owner": "nobody", "user_access_kubeconfig_group": "nogroup", "user_access_kubeconfig_mode": "0640"}
    out = onboard(run_playbook, setup, files)
    assert out.rc == 0, out
    assert attributes(setup["path"]) == ("nobody", "nogroup", "0640")
    # the user the file was given to logs in with it, to every cluster
    for cluster in sandbox.names:
        code, said = as_nobody(setup["path"], cluster)
        assert code == 0 and said.strip() == USER["name"], said

    again = onboard(run_playbook, setup, files)
    assert again.rc == 0 and again.changed == 0, job_result(again)
    symbolic = onboard(run_playbook, setup, dict(files, user_access_kubeconfig_mode="u=rw,g=r"))
    assert symbolic.rc == 0 and symbolic.changed == 0, job_result(symbolic)

    # only the mode differs: check mode reports it and touches nothing, the real run changes just that
    checked = onboard(run_playbook, setup, dict(files, user_access_kubeconfig_mode="0600"), check=True, diff=True)
    assert checked.rc == 0 and checked.changed == 1, checked
    assert job_result(checked)["diff"] == [{"before": {"mode": "0640", "path": setup["path"]}, "after": {"mode": "0600", "path": setup["path"]}}]
    assert attributes(setup["path"]) == ("nobody", "nogroup", "0640")
    out = onboard(run_playbook, setup, dict(files, user_access_kubeconfig_mode="0600"))
    assert out.rc == 0 and out.changed == 1, out
    assert attributes(setup["path"]) == ("nobody", "nogroup", "0600")
    code, said = as_nobody(setup["path"], sandbox.names[0])
    assert code == 0, said

    # the defaults again: the file goes back to the user running the play, 0600, and nobody is locked out
    out = onboard(run_playbook, setup, {"user_access_kubeconfig_owner": "root", "user_access_kubeconfig_group": "root"})
    assert out.rc == 0 and out.changed == 1, out
    assert attributes(setup["path"]) == ("root", "root", "0600")
    code, said = as_nobody(setup["path"], sandbox.names[0])
    assert code != 0 and "permission denied" in said, said


def test_a_world_readable_mode_is_refused_before_anything_is_done(run_playbook, sandbox, setup):
    out = onboard(run_playbook, setup, {"user_access_kubeconfig_mode": "0644"})
    assert out.rc != 0
    [(_task, _host, msg)] = out.failures()
    assert "mode '0644' (0644) would give others" in msg, msg
    assert not os.path.exists(setup["path"])
    assert not os.path.exists(setup["extra"]["user_access_store_uri"]), "nothing may be written for refused input"
