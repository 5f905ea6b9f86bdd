"""kubernetes.core k8s / k8s_info in a playbook against the sandbox (DynamicClient path)."""

import json
import os
import subprocess
import sys

import ansible_collections.kubernetes.core as kcore

from sandbox_helpers import b64, csr_pem, unique

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    kc: "{kubeconfig}"
  tasks:
    - name: create the CSR
      kubernetes.core.k8s:
        kubeconfig: "{{{{ kc }}}}"
        state: present
        definition:
          apiVersion: certificates.k8s.io/v1
          kind: CertificateSigningRequest
          metadata: {{name: "{name}", labels: {{owner: ansible}}}}
          spec:
            request: "{request}"
            signerName: kubernetes.io/kube-apiserver-client
            usages: [client auth]
            expirationSeconds: 3600
      register: created
    - name: same again is not a change
      kubernetes.core.k8s:
        kubeconfig: "{{{{ kc }}}}"
        state: present
        definition: "{{{{ created.result }}}}"
      register: again
    - name: read it back
      kubernetes.core.k8s_info:
        kubeconfig: "{{{{ kc }}}}"
        api_version: certificates.k8s.io/v1
        kind: CertificateSigningRequest
        label_selectors: [owner=ansible]
        field_selectors: ["metadata.name={name}"]
      register: info
    - name: a namespaced object
      kubernetes.core.k8s:
        kubeconfig: "{{{{ kc }}}}"
        state: present
        definition: {{apiVersion: v1, kind: ConfigMap, metadata: {{name: "{name}", namespace: default}},
                      data: {{a: b}}}}
      register: cm
    - name: delete the CSR
      kubernetes.core.k8s:
        kubeconfig: "{{{{ kc }}}}"
        state: absent
        api_version: certificates.k8s.io/v1
        kind: CertificateSigningRequest
        name: "{name}"
      register: deleted
    - copy:
        dest: "{out}"
        content: "{{{{ {{'created': created.changed, 'again': again.changed, 'user': info.resources[0].spec.username,
                     'count': info.resources | length, 'cm': cm.changed, 'deleted': deleted.changed}} | to_json }}}}"
"""


def test_k8s_modules_in_playbook(c1, tmp_path):
    name = unique()
    out = tmp_path / "result.json"
    book = tmp_path / "play.yml"
    book.write_text(PLAYBOOK.format(kubeconfig=c1.kubeconfig, name=name, request=b64(csr_pem("ans")), out=out))
    inventory = tmp_path / "inventory"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    collections = os.path.dirname(os.path.dirname(os.path.dirname(list(kcore.__path__)[0])))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               HOME=str(tmp_path), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
                           str(book)], capture_output=True, text=True, env=env, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result == {"created": True, "again": False, "user": "kubernetes-admin", "count": 1, "cm": True,
                      "deleted": True}
