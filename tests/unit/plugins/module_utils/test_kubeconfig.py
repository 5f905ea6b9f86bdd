"""kubeconfig rendering, validation (read back and compared), secrets and redaction."""

import base64

import pytest
import yaml

from ansible_collections.kubepki.certs.plugins.module_utils import _kubeconfig
from ansible_collections.kubepki.certs.plugins.module_utils._pki import crypto as _crypto
from ansible_collections.kubepki.certs.plugins.module_utils._errors import KubePkiError

import pki_support


@pytest.fixture(scope="module")
def material():
    ca = pki_support.new_ca("kubeconfig-test-ca")
    key = _crypto.generate_private_key()
    cert = pki_support.client_cert(ca, "alice", ["team-a"], key=key)
    return {
        "ca_pem": pki_support.cert_pem(ca.cert).decode(),
        "certificate_pem": pki_support.cert_pem(cert.cert).decode(),
        "private_key_pem": _crypto.private_key_to_pem(key),
    }


def entries(material, names=("c1", "c2")):
    return [dict(material, cluster=name, server="https://127.0.0.1:%d" % (6443 + i), user="alice",
                 namespace="team-a" if i else None) for i, name in enumerate(names)]


def test_render_shape(material):
    config = _kubeconfig.render(entries(material))
    assert config["apiVersion"] == "v1" and config["kind"] == "Config"
    assert [c["name"] for c in config["clusters"]] == ["c1", "c2"]
    assert config["clusters"][0]["cluster"] == {
        "server": "https://127.0.0.1:6443", "certificate-authority-data": _crypto.b64(material["ca_pem"])}
    assert [u["name"] for u in config["users"]] == ["alice@c1", "alice@c2"]
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]).decode() == material["certificate_pem"]
    assert base64.b64decode(user["client-key-data"]).decode() == material["private_key_pem"]
    assert config["contexts"][0] == {"name": "alice@c1", "context": {"cluster": "c1", "user": "alice@c1"}}
    assert config["contexts"][1]["context"]["namespace"] == "team-a"
    assert config["current-context"] == "alice@c1"


def test_dump_is_stable_yaml(material):
    config = _kubeconfig.render(entries(material))
    text = _kubeconfig.dump(config)
    assert text == _kubeconfig.dump(_kubeconfig.render(entries(material)))
    assert yaml.safe_load(text) == config
    assert _kubeconfig.load(text) == config


def test_current_context_and_custom_names(material):
    items = entries(material)
    items[1]["context"] = "prod"
    config = _kubeconfig.render(items, current_context="prod")
    assert config["current-context"] == "prod"
    with pytest.raises(KubePkiError, match="current_context 'nope' is none of the rendered contexts"):
        _kubeconfig.render(items, current_context="nope")
    items[0]["context"] = "prod"
    with pytest.raises(KubePkiError, match="context name 'prod' is used twice"):
        _kubeconfig.render(items)
    with pytest.raises(KubePkiError, match="clusters: give at least one cluster"):
        _kubeconfig.render([])


def test_without_ca(material):
    item = entries(material, ["c1"])[0]
    item["ca_pem"] = None
    config = _kubeconfig.render([item])
    assert "certificate-authority-data" not in config["clusters"][0]["cluster"]
    assert _kubeconfig.validate(config)


def test_validate_reads_back_the_text(material):
    items = entries(material)
    config = _kubeconfig.render(items)
    assert _kubeconfig.validate(_kubeconfig.dump(config), items)
    assert _kubeconfig.validate(config)


def test_rendered_config_loads_in_the_kubernetes_client(material, tmp_path):
    """An independent reader (the kubernetes library's loader) sees the same server, CA, certificate and key."""
    from kubernetes import client, config as k8s_config  # pylint: disable=import-outside-toplevel
    path = tmp_path / "alice.kubeconfig"
    path.write_text(_kubeconfig.dump(_kubeconfig.render(entries(material))))
    for context, server in (("alice@c1", "https://127.0.0.1:6443"), ("alice@c2", "https://127.0.0.1:6444")):
        configuration = client.Configuration()
        k8s_config.load_kube_config(config_file=str(path), context=context, client_configuration=configuration,
                                    persist_config=False, temp_file_path=str(tmp_path))
        assert configuration.host == server
        for name, pem in ((configuration.ssl_ca_cert, "ca_pem"), (configuration.cert_file, "certificate_pem"),
                          (configuration.key_file, "private_key_pem")):
            with open(name, encoding="utf-8") as handle:
                assert handle.read() == material[pem]


def test_validate_rejects_broken_config(material):
    items = entries(material, ["c1"])
    config = _kubeconfig.render(items)
    config["contexts"][0]["context"]["user"] = "ghost"
    with pytest.raises(KubePkiError, match=r"does not load \(context 'alice@c1'\): kubeconfig: user 'ghost' is not defined"):
        _kubeconfig.validate(config)
    config = _kubeconfig.render(items)
    del config["users"][0]["user"]["client-key-data"]
    with pytest.raises(KubePkiError, match="context 'alice@c1' carries no client certificate and key"):
        _kubeconfig.validate(config)
    config = _kubeconfig.render(items)
    config["clusters"].append({"name": "c1", "cluster": {"server": "https://127.0.0.1:6443"}})
    with pytest.raises(KubePkiError, match="has cluster 'c1' twice"):
        _kubeconfig.validate(config)
    config = _kubeconfig.render(items)
    config["current-context"] = "nope"
    with pytest.raises(KubePkiError, match="current-context 'nope' is none of its contexts"):
        _kubeconfig.validate(config)
    config = _kubeconfig.render(items)
    config["users"][0]["user"]["exec"] = {"command": "get-token"}
    with pytest.raises(KubePkiError, match="uses fields only the kubernetes library reads"):
        _kubeconfig.validate(config)


def test_validate_compares_with_what_was_rendered(material):
    items = entries(material, ["c1", "c2"])
    text = _kubeconfig.dump(_kubeconfig.render(items))
    moved = [dict(items[0], server="https://127.0.0.1:7000"), items[1]]
    with pytest.raises(KubePkiError, match="context 'alice@c1' gives back another server than was rendered"):
        _kubeconfig.validate(text, moved)
    other_key = [items[0], dict(items[1], private_key_pem=_crypto.private_key_to_pem(_crypto.generate_private_key()))]
    with pytest.raises(KubePkiError, match="context 'alice@c2' gives back another client-key-data than was rendered"):
        _kubeconfig.validate(text, other_key)
    with pytest.raises(KubePkiError, match=r"has contexts \['alice@c1', 'alice@c2'\], not \['alice@c1'\]"):
        _kubeconfig.validate(text, items[:1])
    with pytest.raises(KubePkiError, match="the rendered kubeconfig cannot be parsed"):
        _kubeconfig.validate("clusters: [", items)


def test_secret_values(material):
    config = _kubeconfig.render(entries(material, ["c1"]))
    secrets = _kubeconfig.secret_values(config)
    key_data = config["users"][0]["user"]["client-key-data"]
    assert key_data in secrets and material["private_key_pem"] in secrets
    assert config["users"][0]["user"]["client-certificate-data"] not in secrets
    returned = _kubeconfig.secret_values(config, encoded=False)
    assert key_data not in returned and material["private_key_pem"] in returned
    text = _kubeconfig.dump(config)
    assert not any(value in text for value in returned)


def test_redacted_hides_the_key(material):
    config = _kubeconfig.render(entries(material, ["c1"]))
    view = _kubeconfig.redacted(config)
    text = _kubeconfig.dump(view)
    assert view["users"][0]["user"]["client-key-data"] == "<redacted>"
    assert view["users"][0]["user"]["client-certificate-data"].startswith("sha256:")
    assert config["users"][0]["user"]["client-key-data"] not in text
    assert config["users"][0]["user"]["client-key-data"] != "<redacted>"


def test_load_rejects_non_mapping():
    with pytest.raises(KubePkiError, match="dest x is not a mapping"):
        _kubeconfig.load("- a\n- b\n", what="dest x")


def pyyaml_text(config):
    return yaml.dump(config, Dumper=yaml.CSafeDumper, default_flow_style=False, sort_keys=False, width=1 << 16)


def test_dump_writes_what_pyyaml_writes(material):
    """dump() writes the usual kubeconfig itself; the text must be PyYAML's, byte for byte, or every file
    rendered before would count as changed."""
    config = _kubeconfig.render(entries(material, names=("c1", "prod-eu.1", "2001", "yes")))
    assert _kubeconfig.dump(config) == pyyaml_text(config)
    assert _kubeconfig.dump(_kubeconfig.redacted(config)) == pyyaml_text(_kubeconfig.redacted(config))


@pytest.mark.parametrize("name", ["1", "1e3", "0x1f", ".5", "yes", "Off", "null", "~", "=", "2001-12-14", "12:30", "+1",
                                  "-x", "x:", "...x", "@x", "a b", "a: b", "a #b", "", "x" * 200, "ünï", "tab\there"])
def test_dump_quotes_what_pyyaml_quotes(material, name):
    config = _kubeconfig.render(entries(material, names=(name,)))
    config["users"][0]["name"] = name
    assert _kubeconfig.dump(config) == pyyaml_text(config)
    assert yaml.safe_load(_kubeconfig.dump(config))["clusters"][0]["name"] == name


def test_dump_agrees_with_pyyaml_on_random_names():
    import random
    import string
    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + "_./+=@~:-#! '\"" + "0123456789.:-eE+_xobYNn~=" * 3
    for _round in range(3000):
        names = ["".join(rng.choice(alphabet) for _char in range(rng.randint(1, 10))) for _name in range(4)]
        config = {"apiVersion": "v1", "clusters": [{"name": names[0], "cluster": {"server": names[1]}}],
                  "preferences": {}, names[2]: names[3], "current-context": names[3]}
        assert _kubeconfig.dump(config) == pyyaml_text(config), names


# ---------------------------------------------------------------- reading back an existing file, offboarding a cluster

def test_client_contexts_give_back_what_was_rendered(material):
    items = entries(material)
    items[1]["context"] = "prod"
    found = _kubeconfig.client_contexts(_kubeconfig.load(_kubeconfig.dump(_kubeconfig.render(items))))
    assert [(f["context"], f["cluster"], f["server"], f["namespace"], f["problem"]) for f in found] == [
        ("alice@c1", "c1", "https://127.0.0.1:6443", None, None), ("prod", "c2", "https://127.0.0.1:6444", "team-a", None)]
    assert all(f["ca_pem"] == material["ca_pem"] and f["certificate_pem"] == material["certificate_pem"] for f in found)


def test_client_contexts_name_what_cannot_be_carried_over(material):
    config = _kubeconfig.render(entries(material, names=("c1", "c2", "c3", "c4")))
    config["contexts"].append({"name": "again", "context": {"cluster": "c1", "user": "alice@c1"}})
    config["users"][1]["user"] = {"token": "t0ken"}
    config["clusters"][2]["cluster"]["insecure-skip-tls-verify"] = True
    config["users"][3]["user"]["client-certificate-data"] = "not base64!"
    found = {f["context"]: f["problem"] for f in _kubeconfig.client_contexts(config)}
    assert found["alice@c1"] is None
    assert found["again"] == "an earlier context of the file is for the same cluster"
    assert found["alice@c2"] == found["alice@c3"] == "it is not a client-certificate context of the kind this module writes"
    assert found["alice@c4"] == "its client-certificate-data is not base64 PEM text"


def test_without_clusters_removes_only_those_contexts(material):
    config = _kubeconfig.render(entries(material, names=("c1", "c2", "c3")), current_context="alice@c2")
    pruned, removed = _kubeconfig.without_clusters(config, ["c2"])
    assert removed == ["alice@c2"]
    assert [c["name"] for c in pruned["contexts"]] == ["alice@c1", "alice@c3"]
    assert [c["name"] for c in pruned["clusters"]] == ["c1", "c3"] and [u["name"] for u in pruned["users"]] == ["alice@c1", "alice@c3"]
    assert pruned["current-context"] == "alice@c1"
    assert pruned["contexts"] == [c for c in config["contexts"] if c["name"] != "alice@c2"]
    assert _kubeconfig.validate(_kubeconfig.dump(pruned))
    same, none = _kubeconfig.without_clusters(config, ["c9"])
    assert same is config and none == []
    empty, removed = _kubeconfig.without_clusters(config, ["c1", "c2", "c3"])
    assert empty["contexts"] == [] and empty["current-context"] is None and len(removed) == 3


def test_client_contexts_of_a_hand_edited_file_do_not_break(material):
    config = _kubeconfig.render(entries(material))
    config["contexts"][0]["name"] = ["not", "a", "name"]
    config["contexts"][1]["context"]["cluster"] = {"c2": True}
    config["contexts"].append("not a mapping")
    config["contexts"].append({"name": "ns", "context": {"cluster": "c1", "user": "alice@c1", "namespace": ["x"]}})
    found = _kubeconfig.client_contexts(config)
    assert [(f["context"], f["cluster"], f["problem"]) for f in found] == [
        (None, "c1", "it has no name or no cluster"), ("alice@c2", None, "it has no name or no cluster"),
        ("ns", "c1", "its namespace is not a string")]
