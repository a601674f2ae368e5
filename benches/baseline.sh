#!/usr/bin/env bash
# The "hard way" baseline that `cargo xtask bench` compares kubeforge with: what a careful user writes with the
# openssl CLI and `kubectl config` (Kubernetes The Hard Way, kubeadm's certificate profiles). Written for this
# project; kept honest rather than slow:
#   - one openssl process per certificate (OpenSSL 3's `req -x509 -newkey -CA`: key, subject, extensions and
#     signature in one go), no CSR round trip;
#   - kubeconfigs the documented way: `kubectl config set-cluster / set-credentials / set-context /
#     use-context` with --embed-certs (four kubectl processes per kubeconfig);
#   - sequential, as such scripts are; no network, everything local.
#
# It issues what kubeforge issues for 1 control plane (cp-1, 10.0.0.11) + N workers (worker-I at
# 10.1.(I/250).(I%250+1), the addresses `cargo xtask bench` puts in its specs), with the same CNs, Os, key usages,
# extended key usages and SANs (src/pki/certificates.md):
#   CAs: kubernetes, front-proxy-ca, etcd-ca; the service-account key pair;
#   cp-1: apiserver, apiserver-kubelet-client, front-proxy-client, etcd server/peer/healthcheck-client,
#         apiserver-etcd-client, controller-manager/scheduler/admin/super-admin client certs and kubeconfigs;
#   every node: kubelet client cert + kubelet.conf, kubelet serving cert, kube-proxy client cert + kube-proxy.conf,
#         the cluster CA's certificate, and the kubelet's KubeletConfiguration (/var/lib/kubelet/config.yaml, what
#         kubeforge writes for the kubelet to use those certificates; one printf, no process).
# Differences that do not change the cost: keys are PKCS#8 (`PRIVATE KEY`, what openssl writes; kubeadm and
# kubeforge write SEC 1 / PKCS#1), NotBefore is not backdated, serials are openssl's. No static pod manifests.
#
# usage: benches/baseline.sh OUTDIR N ALG KUBECTL
#   OUTDIR  a directory that does not exist yet (or is empty)
#   N       number of workers (0 or more)
#   ALG     ECDSA-P256 or RSA-2048
#   KUBECTL path to a kubectl binary (`cargo xtask bench` passes the one under target/tools)
set -euo pipefail

if [[ $# -ne 4 ]]; then
    echo "usage: $0 OUTDIR N ALG KUBECTL" >&2
    exit 64
fi
OUT=$1 N=$2 ALG=$3 KUBECTL=$4
[[ $N =~ ^[0-9]+$ ]] || { echo "N must be a whole number, not '$N'" >&2; exit 64; }
case $ALG in
    ECDSA-P256) NEWKEY=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); SAKEY=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256) ;;
    RSA-2048) NEWKEY=(-newkey rsa:2048); SAKEY=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048) ;;
    *) echo "ALG must be ECDSA-P256 or RSA-2048, not '$ALG'" >&2; exit 64 ;;
esac
[[ -x $KUBECTL ]] || { echo "kubectl '$KUBECTL' is not executable" >&2; exit 64; }
if [[ -e $OUT ]] && [[ -n $(ls -A "$OUT") ]]; then
    echo "$OUT exists and is not empty" >&2
    exit 64
fi

CLUSTER=bench
CP=cp-1
CP_ADDR=10.0.0.11
SERVER=https://$CP_ADDR:6443 # controlPlaneEndpoint is empty: every kubeconfig talks to cp-1
SERVICE_IP=10.96.0.1         # first address of serviceSubnet 10.96.0.0/12
DNS_DOMAIN=cluster.local
CA_DAYS=3650   # caValidity 87600h
CERT_DAYS=365  # certificateValidity 8760h

umask 077 # private keys and kubeconfigs must not be world-readable
mkdir -p "$OUT/pki/nodes"
exec 3>"$OUT/openssl.log" # openssl's progress dots and notes
trap 'echo "baseline.sh failed near line $LINENO; see $OUT/openssl.log" >&2' ERR

CNF=$OUT/openssl.cnf
cat >"$CNF" <<'EOF'
# Only what each profile needs: no defaults from the system openssl.cnf.
[ req ]
distinguished_name = dn
[ dn ]
[ ext_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyEncipherment, keyCertSign
subjectKeyIdentifier = hash
subjectAltName = $ENV::SAN
[ ext_client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ ext_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = $ENV::SAN
[ ext_peer ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = $ENV::SAN
EOF

# ca NAME CN: a self-signed CA in $OUT/pki/NAME.{crt,key}.
ca() {
    SAN=DNS:$2 openssl req -x509 "${NEWKEY[@]}" -noenc -keyout "$OUT/pki/$1.key" -out "$OUT/pki/$1.crt" \
        -subj "/CN=$2" -days $CA_DAYS -config "$CNF" -extensions ext_ca 2>&3
}

# leaf EXT SIGNER SUBJECT BASE [SAN]: a key and a certificate BASE.{crt,key} signed by the CA $OUT/pki/SIGNER.
leaf() {
    SAN=${5:-DNS:unused} openssl req -x509 "${NEWKEY[@]}" -noenc -keyout "$4.key" -out "$4.crt" \
        -subj "$3" -days $CERT_DAYS -config "$CNF" -extensions "ext_$1" \
        -CA "$OUT/pki/$2.crt" -CAkey "$OUT/pki/$2.key" 2>&3
}

# kubeconfig FILE USER BASE: a kubeconfig with the cluster CA and the client certificate BASE.{crt,key}, embedded.
kubeconfig() {
    "$KUBECTL" config set-cluster "$CLUSTER" --server="$SERVER" --certificate-authority="$OUT/pki/ca.crt" \
        --embed-certs=true --kubeconfig="$1" >/dev/null
    "$KUBECTL" config set-credentials "$2" --client-certificate="$3.crt" --client-key="$3.key" \
        --embed-certs=true --kubeconfig="$1" >/dev/null
    "$KUBECTL" config set-context "$2@$CLUSTER" --cluster="$CLUSTER" --user="$2" --kubeconfig="$1" >/dev/null
    "$KUBECTL" config use-context "$2@$CLUSTER" --kubeconfig="$1" >/dev/null
}

# The kubelet's configuration, the same on every node (the one kubeforge writes for this cluster).
KUBELET_CONFIG="apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: $DNS_DOMAIN
containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock
eventRecordQPS: 5
healthzBindAddress: 127.0.0.1
healthzPort: 10248
makeIPTablesUtilChains: true
protectKernelDefaults: false
readOnlyPort: 0
rotateCertificates: true
serverTLSBootstrap: false
staticPodPath: /etc/kubernetes/manifests
streamingConnectionIdleTimeout: 5m0s
tlsCertFile: /var/lib/kubelet/pki/kubelet.crt
tlsCipherSuites:
- TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
- TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
- TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305
- TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
- TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
- TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305
tlsMinVersion: VersionTLS12
tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key"

# node NAME ADDRESS: what every node gets (kubelet client + kubelet.conf, kubelet serving, kube-proxy + conf, the CA's
# certificate, the kubelet's configuration).
node() {
    local name=$1 addr=$2
    local store=$OUT/pki/nodes/$name root=$OUT/nodes/$name
    mkdir -p "$store" "$root/etc/kubernetes/pki" "$root/var/lib/kubelet/pki"
    cp "$OUT/pki/ca.crt" "$root/etc/kubernetes/pki/ca.crt"
    printf '# KubeletConfiguration for node %s\n%s\n' "$name" "$KUBELET_CONFIG" >"$root/var/lib/kubelet/config.yaml"
    leaf client ca "/O=system:nodes/CN=system:node:$name" "$store/kubelet-client"
    kubeconfig "$root/etc/kubernetes/kubelet.conf" "system:node:$name" "$store/kubelet-client"
    leaf server ca "/O=system:nodes/CN=system:node:$name" "$root/var/lib/kubelet/pki/kubelet" "DNS:$name,IP:$addr"
    leaf client ca "/CN=system:kube-proxy" "$store/kube-proxy"
    kubeconfig "$root/etc/kubernetes/kube-proxy.conf" system:kube-proxy "$store/kube-proxy"
}

# --- cluster scope ---
ca ca kubernetes
ca front-proxy-ca front-proxy-ca
ca etcd-ca etcd-ca
openssl genpkey "${SAKEY[@]}" -out "$OUT/pki/sa.key" 2>&3
openssl pkey -in "$OUT/pki/sa.key" -pubout -out "$OUT/pki/sa.pub" 2>&3
leaf client ca "/O=kubeadm:cluster-admins/CN=kubernetes-admin" "$OUT/pki/admin"
kubeconfig "$OUT/admin.conf" kubernetes-admin "$OUT/pki/admin"
leaf client ca "/O=system:masters/CN=kubernetes-super-admin" "$OUT/pki/super-admin"
kubeconfig "$OUT/pki/super-admin.conf" kubernetes-super-admin "$OUT/pki/super-admin"

# --- the control-plane node ---
node "$CP" "$CP_ADDR"
K8S=$OUT/nodes/$CP/etc/kubernetes
P=$K8S/pki
mkdir -p "$P/etcd"
cp "$OUT/pki/ca.key" "$OUT/pki/front-proxy-ca.crt" "$OUT/pki/front-proxy-ca.key" "$OUT/pki/sa.key" "$OUT/pki/sa.pub" "$P/"
cp "$OUT/pki/etcd-ca.crt" "$P/etcd/ca.crt"
cp "$OUT/pki/etcd-ca.key" "$P/etcd/ca.key"
cp "$OUT/admin.conf" "$K8S/admin.conf"
mv "$OUT/pki/super-admin.conf" "$K8S/super-admin.conf"
leaf server ca /CN=kube-apiserver "$P/apiserver" \
    "DNS:$CP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$DNS_DOMAIN,IP:$SERVICE_IP,IP:$CP_ADDR"
leaf client ca "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client" "$P/apiserver-kubelet-client"
leaf client front-proxy-ca /CN=front-proxy-client "$P/front-proxy-client"
ETCD_SAN="DNS:$CP,DNS:localhost,IP:$CP_ADDR,IP:127.0.0.1,IP:::1"
leaf peer etcd-ca "/CN=$CP" "$P/etcd/server" "$ETCD_SAN"
leaf peer etcd-ca "/CN=$CP" "$P/etcd/peer" "$ETCD_SAN"
leaf client etcd-ca /CN=kube-etcd-healthcheck-client "$P/etcd/healthcheck-client"
leaf client etcd-ca /CN=kube-apiserver-etcd-client "$P/apiserver-etcd-client"
CPS=$OUT/pki/nodes/$CP
leaf client ca /CN=system:kube-controller-manager "$CPS/controller-manager"
kubeconfig "$K8S/controller-manager.conf" system:kube-controller-manager "$CPS/controller-manager"
leaf client ca /CN=system:kube-scheduler "$CPS/scheduler"
kubeconfig "$K8S/scheduler.conf" system:kube-scheduler "$CPS/scheduler"

# --- workers ---
for ((i = 1; i <= N; i++)); do
    node "worker-$i" "10.1.$((i / 250)).$((i % 250 + 1))"
done
