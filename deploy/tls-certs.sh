#!/bin/sh
# Makes the certificates docker-compose.yml mounts from LEDGERLOCK_TLS_DIR, for a trial of the
# production-like deployment: a private CA, the Temporal server's certificate (name `temporal`),
# one client certificate for Ledgerlock and the Temporal tools (mTLS), and the API and codec
# server's certificate (localhost, plus API_TLS_NAMES, e.g. "DNS:billing.example.com").
# A real deployment uses certificates from its own CA and renews them; this CA's key stays in DIR.
# Usage: deploy/tls-certs.sh DIR
set -eu
dir=${1:?usage: deploy/tls-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [ -e ca.pem ]; then echo "$dir already holds a CA; remove it to start over" >&2; exit 1; fi
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj '/CN=Ledgerlock deployment CA' \
  -keyout ca-key.pem -out ca.pem -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
leaf() { # name subject extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" -keyout "$1-key.pem" -out "$1.csr" 2>/dev/null
  printf '%b' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 90 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf temporal /CN=temporal 'subjectAltName=DNS:temporal,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n'
leaf client /CN=ledgerlock 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n'
leaf api /CN=localhost "subjectAltName=DNS:localhost,IP:127.0.0.1${API_TLS_NAMES:+,$API_TLS_NAMES}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
# The Temporal and Ledgerlock images run as users of their own, so they must be able to read
# these; keep DIR where only the deployment reaches it. The CA key stays 0600.
chmod 0644 ca.pem temporal.pem temporal-key.pem client.pem client-key.pem api.pem api-key.pem
echo "certificates in $dir: set LEDGERLOCK_TLS_DIR=$dir"
