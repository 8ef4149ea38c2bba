package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority made for one test, its certificate written
// as a PEM file (File) for the settings that take a CA file.
type CA struct {
	t    testing.TB
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// File is the CA certificate (PEM).
	File string
}

// Cert is a certificate signed by a CA, written as PEM files.
type Cert struct {
	// CertFile is the certificate followed by its CA's (the chain);
	// KeyFile the unencrypted PKCS#8 private key.
	CertFile, KeyFile string
	// Keystore holds both (key first), the form Kafka's
	// ssl.keystore.type=PEM reads.
	Keystore string
}

// NewCA makes a CA named name; its files live in the test's temporary
// folder.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"lcpipe tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testenv: CA certificate: %v", err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{t: t, dir: t.TempDir(), cert: cert, key: key}
	ca.File = filepath.Join(ca.dir, "ca.pem")
	writePEM(t, ca.File, pemBlock("CERTIFICATE", der))
	return ca
}

// Server issues a server certificate for hosts (DNS names or IP
// addresses).
func (ca *CA) Server(name string, hosts ...string) Cert {
	return ca.issue(name, x509.ExtKeyUsageServerAuth, hosts)
}

// Client issues a client certificate.
func (ca *CA) Client(name string) Cert { return ca.issue(name, x509.ExtKeyUsageClientAuth, nil) }

func (ca *CA) issue(name string, usage x509.ExtKeyUsage, hosts []string) Cert {
	t := ca.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("testenv: certificate: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: key: %v", err)
	}
	base := filepath.Join(ca.dir, strings.NewReplacer("/", "_", " ", "_").Replace(name))
	chain := pemBlock("CERTIFICATE", der) + pemBlock("CERTIFICATE", ca.cert.Raw)
	keyPEM := pemBlock("PRIVATE KEY", pkcs8)
	c := Cert{CertFile: base + ".crt", KeyFile: base + ".key", Keystore: base + ".keystore.pem"}
	writePEM(t, c.CertFile, chain)
	writePEM(t, c.KeyFile, keyPEM)
	writePEM(t, c.Keystore, keyPEM+chain)
	return c
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("testenv: serial: %v", err)
	}
	return n
}

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func writePEM(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// SecureKafka describes the SASL_SSL listener of PrivateSecureKafka.
type SecureKafka struct {
	// Server is the broker's certificate (CA.Server).
	Server Cert
	// Users are user -> password, accepted with PLAIN, SCRAM-SHA-256 and
	// SCRAM-SHA-512.
	Users map[string]string
	// ClientCA, when set, makes the listener ask for a client certificate
	// signed by it; ClientAuth is "required" (default) or "requested".
	ClientCA   string
	ClientAuth string
}

// PrivateSecureKafka starts a broker of its own for this test with a
// SASL_SSL listener (at SecureAddr) besides the plaintext one (Addr, for
// setting up topics without credentials). It is stopped at the end of the
// test.
func PrivateSecureKafka(t testing.TB, s SecureKafka) *Instance {
	t.Helper()
	port := freePort(t, 3) // broker, controller, SASL_SSL
	in := &Instance{t: t, service: "kafka", runDir: t.TempDir(), Addr: "127.0.0.1:" + strconv.Itoa(port),
		SecureAddr: "127.0.0.1:" + strconv.Itoa(port+2)}
	users := make([]string, 0, len(s.Users))
	for u, p := range s.Users {
		users = append(users, u+":"+p)
	}
	sort.Strings(users)
	in.env = []string{"RUN_DIR=" + in.runDir, "KAFKA_PORT=" + strconv.Itoa(port), "KAFKA_BROKERS=", "KAFKA_HEAP=-Xms128m -Xmx512m",
		"KAFKA_SSL_PORT=" + strconv.Itoa(port+2), "KAFKA_SSL_KEYSTORE=" + s.Server.Keystore,
		"KAFKA_SASL_USERS=" + strings.Join(users, ","),
		"KAFKA_SSL_CLIENT_CA=" + s.ClientCA, "KAFKA_SSL_CLIENT_AUTH=" + s.ClientAuth}
	in.Start()
	t.Cleanup(in.Stop)
	return in
}

// PrivateSecureClickHouse starts a ClickHouse server of its own for this
// test with a TLS native port (at SecureAddr) presenting server, besides
// the plaintext one (Addr). It is stopped at the end of the test.
func PrivateSecureClickHouse(t testing.TB, server Cert) *Instance {
	t.Helper()
	port := freePort(t, 3) // native, HTTP, native over TLS
	http, secure := port+1, port+2
	in := &Instance{t: t, service: "clickhouse", runDir: t.TempDir(), Addr: "127.0.0.1:" + strconv.Itoa(port),
		SecureAddr: "127.0.0.1:" + strconv.Itoa(secure)}
	in.env = []string{"RUN_DIR=" + in.runDir, "CH_TCP_PORT=" + strconv.Itoa(port), "CH_HTTP_PORT=" + strconv.Itoa(http), "CLICKHOUSE_ADDR=",
		"CH_TCP_SECURE_PORT=" + strconv.Itoa(secure), "CH_SSL_CERT=" + server.CertFile, "CH_SSL_KEY=" + server.KeyFile}
	in.Start()
	t.Cleanup(in.Stop)
	return in
}
