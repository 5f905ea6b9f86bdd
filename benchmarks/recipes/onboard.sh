#!/usr/bin/env bash
# Onboard users into one or more clusters the way the tutorials do it: openssl for the key and the
# request, kubectl for the CertificateSigningRequest, a polling loop for the certificate and
# `kubectl config` for the kubeconfig. This is the benchmark's "shell recipe": it is written the way
# operators copy it, sequential over users and clusters, not tuned.
#
# usage: onboard.sh USERS_FILE OUT_DIR CLUSTER=ADMIN_KUBECONFIG [CLUSTER=ADMIN_KUBECONFIG ...]
#
#   USERS_FILE  one user a line: "<name> [group,group,...]"
#   OUT_DIR     keys/<user>.key, <cluster>/<user>.kubeconfig are written here (0600)
#
# environment:
#   KEY_TYPE=ec|rsa      ec = P-256 (default, as the collection), rsa = 2048 bits (as most tutorials)
#   POLL_INTERVAL=1      seconds between two `kubectl get csr` while waiting for the certificate
#   POLL_TIMEOUT=120     give up waiting for one certificate after this many seconds
#   TIMINGS_FILE=path    (benchmark only) append "<cluster> <user> <approved> <observed>" epoch times
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 USERS_FILE OUT_DIR CLUSTER=ADMIN_KUBECONFIG [...]" >&2
    exit 2
fi

users_file=$1
out_dir=$2
shift 2

KEY_TYPE=${KEY_TYPE:-ec}
POLL_INTERVAL=${POLL_INTERVAL:-1}
POLL_TIMEOUT=${POLL_TIMEOUT:-120}
TIMINGS_FILE=${TIMINGS_FILE:-}

umask 077
mkdir -p "${out_dir}/keys"

make_key() {
    local key=$1
    if [[ -s "${key}" ]]; then
        return 0
    fi
    if [[ "${KEY_TYPE}" == rsa ]]; then
        openssl genrsa -out "${key}" 2048 2>/dev/null
    else
        openssl ecparam -name prime256v1 -genkey -noout -out "${key}"
    fi
}

# "/O=dev/O=ops/CN=alice": the groups become O, the user name CN.
subject_for() {
    local user=$1 groups=$2 subject="" group
    if [[ -n "${groups}" ]]; then
        local -a group_list
        IFS=, read -r -a group_list <<<"${groups}"
        for group in "${group_list[@]}"; do
            subject+="/O=${group}"
        done
    fi
    printf '%s/CN=%s' "${subject}" "${user}"
}

onboard_one() {
    local cluster=$1 admin=$2 server=$3 ca_file=$4 user=$5 csr_b64=$6 key=$7
    local csr_name="user-${user}"
    local kubeconfig="${out_dir}/${cluster}/${user}.kubeconfig"
    local cert_file="${out_dir}/${cluster}/${user}.crt"

    # A CSR's spec is immutable: the tutorials delete the old one before creating it again.
    kubectl --kubeconfig "${admin}" delete csr "${csr_name}" --ignore-not-found >/dev/null
    kubectl --kubeconfig "${admin}" apply -f - >/dev/null <<MANIFEST
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: ${csr_name}
spec:
  request: ${csr_b64}
  signerName: kubernetes.io/kube-apiserver-client
  usages:
  - client auth
MANIFEST
    kubectl --kubeconfig "${admin}" certificate approve "${csr_name}" >/dev/null
    local approved=${EPOCHREALTIME}

    local certificate="" deadline=$((SECONDS + POLL_TIMEOUT))
    while true; do
        certificate=$(kubectl --kubeconfig "${admin}" get csr "${csr_name}" -o jsonpath='{.status.certificate}')
        if [[ -n "${certificate}" ]]; then
            break
        fi
        if ((SECONDS >= deadline)); then
            echo "timed out waiting for the certificate of ${user} in ${cluster}" >&2
            return 1
        fi
        sleep "${POLL_INTERVAL}"
    done
    local observed=${EPOCHREALTIME}
    if [[ -n "${TIMINGS_FILE}" ]]; then
        printf '%s %s %s %s\n' "${cluster}" "${user}" "${approved}" "${observed}" >>"${TIMINGS_FILE}"
    fi

    printf '%s' "${certificate}" | base64 -d >"${cert_file}"
    rm -f "${kubeconfig}"
    kubectl config --kubeconfig "${kubeconfig}" set-cluster "${cluster}" \
        --server "${server}" --certificate-authority "${ca_file}" --embed-certs=true >/dev/null
    kubectl config --kubeconfig "${kubeconfig}" set-credentials "${user}" \
        --client-certificate "${cert_file}" --client-key "${key}" --embed-certs=true >/dev/null
    kubectl config --kubeconfig "${kubeconfig}" set-context "${user}@${cluster}" \
        --cluster "${cluster}" --user "${user}" >/dev/null
    kubectl config --kubeconfig "${kubeconfig}" use-context "${user}@${cluster}" >/dev/null
    rm -f "${cert_file}"
}

# Server and CA of each cluster, read once from the admin kubeconfig.
declare -a cluster_names admin_configs servers ca_files
for spec in "$@"; do
    cluster=${spec%%=*}
    admin=${spec#*=}
    mkdir -p "${out_dir}/${cluster}"
    ca_file="${out_dir}/${cluster}/ca.crt"
    kubectl config --kubeconfig "${admin}" view --raw --minify \
        -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"${ca_file}"
    cluster_names+=("${cluster}")
    admin_configs+=("${admin}")
    servers+=("$(kubectl config --kubeconfig "${admin}" view --minify -o jsonpath='{.clusters[0].cluster.server}')")
    ca_files+=("${ca_file}")
done

while read -r user groups; do
    [[ -z "${user}" || "${user}" == \#* ]] && continue
    key="${out_dir}/keys/${user}.key"
    make_key "${key}"
    subject=$(subject_for "${user}" "${groups:-}")
    csr_b64=$(openssl req -new -key "${key}" -subj "${subject}" | base64 -w0)
    for i in "${!cluster_names[@]}"; do
        onboard_one "${cluster_names[${i}]}" "${admin_configs[${i}]}" "${servers[${i}]}" "${ca_files[${i}]}" \
            "${user}" "${csr_b64}" "${key}"
    done
done <"${users_file}"
