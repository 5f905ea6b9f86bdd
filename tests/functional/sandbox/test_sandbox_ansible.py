"""kubernetes.core k8s / k8s_info in a playbook against the sandbox (DynamicClient path)."""

import json
import os
import subprocess
import sys

import ansible_collections.kubernetes.core as kcore

from playbook_files import playbook_path
from sandbox_helpers import b64, csr_pem, unique


def test_k8s_modules_in_playbook(c1, tmp_path):
    name = unique()
    out = tmp_path / "result.json"
    extra_vars = tmp_path / "vars.json"
    extra_vars.write_text(json.dumps({"kc": c1.kubeconfig, "name": name, "request": b64(csr_pem("ans")), "out": str(out)}))
    inventory = tmp_path / "inventory"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    collections = os.path.dirname(os.path.dirname(os.path.dirname(list(kcore.__path__)[0])))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               HOME=str(tmp_path), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
                           "-e", "@%s" % extra_vars, playbook_path("sandbox/kubernetes_core_csr.yml")],
                          capture_output=True, text=True, env=env, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result == {"created": True, "again": False, "user": "kubernetes-admin", "count": 1, "cm": True,
                      "deleted": True}
