package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/tlsconf"
)

var names = tlsconf.NamesFor("DB_TLS", "server")

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		c    tlsconf.Config
		want string
	}{
		{"off", tlsconf.Config{}, ""},
		{"on", tlsconf.Config{Enabled: true}, ""},
		{"everything", tlsconf.Config{Enabled: true, CAFile: "ca", CertFile: "c", KeyFile: "k", ServerName: "db"}, ""},
		{"CA while off", tlsconf.Config{CAFile: "ca"}, "DB_TLS_CA_FILE is set but DB_TLS is off"},
		{"certificate while off", tlsconf.Config{CertFile: "c", KeyFile: "k"}, "DB_TLS_CERT_FILE is set but DB_TLS is off"},
		{"key without certificate", tlsconf.Config{Enabled: true, KeyFile: "k"}, "DB_TLS_CERT_FILE and DB_TLS_KEY_FILE go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate(names)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

// server listens on loopback and handles each connection with serve.
func server(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return l.Addr().String()
}

// tlsServer answers TLS with cert; clientCA, when set, requires a client
// certificate it signed. Each connection echoes one byte.
func tlsServer(t *testing.T, cert testenv.Cert, clientCA string) string {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{kp}}
	if clientCA != "" {
		pem, _ := os.ReadFile(clientCA)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return server(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.Handshake() != nil {
			return
		}
		b := make([]byte, 1)
		if _, err := tc.Read(b); err == nil {
			_, _ = tc.Write(b)
		}
	})
}

// TestDialerExplains dials servers that are wrong for the configuration
// in every way the settings can fix, and checks the error names the
// setting; the right configuration exchanges a byte.
func TestDialerExplains(t *testing.T) {
	ca := testenv.NewCA(t, "test CA")
	other := testenv.NewCA(t, "other CA")
	srv := tlsServer(t, ca.Server("db", "localhost", "127.0.0.1"), "")
	mutual := tlsServer(t, ca.Server("db", "127.0.0.1"), ca.File)
	plain := server(t, func(c net.Conn) { _, _ = c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nplaintext")) })
	closes := server(t, func(c net.Conn) {})
	client := ca.Client("client")
	stranger := other.Client("stranger")

	tests := []struct {
		name    string
		addr    string
		c       tlsconf.Config
		setting string // "" when the exchange must work
		says    string
	}{
		{"trusted", srv, tlsconf.Config{Enabled: true, CAFile: ca.File}, "", ""},
		{"server name", srv, tlsconf.Config{Enabled: true, CAFile: ca.File, ServerName: "localhost"}, "", ""},
		{"client certificate", mutual, tlsconf.Config{Enabled: true, CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile}, "", ""},
		{"untrusted", srv, tlsconf.Config{Enabled: true, CAFile: other.File}, "DB_TLS_CA_FILE",
			`DB_TLS_CA_FILE does not trust the server's certificate (` + srv + `, issued by CN=test CA`},
		{"system roots", srv, tlsconf.Config{Enabled: true}, "DB_TLS_CA_FILE", "DB_TLS_CA_FILE is not set and the system's CAs do not trust the server's certificate"},
		{"wrong name", srv, tlsconf.Config{Enabled: true, CAFile: ca.File, ServerName: "db.example.com"}, "DB_TLS_SERVER_NAME",
			`DB_TLS_SERVER_NAME "db.example.com" does not match the server's certificate (` + srv + `, valid for localhost 127.0.0.1)`},
		{"plaintext server", plain, tlsconf.Config{Enabled: true, CAFile: ca.File}, "DB_TLS", "DB_TLS is on but the server at " + plain + " does not answer in TLS"},
		{"server closes", closes, tlsconf.Config{Enabled: true, CAFile: ca.File}, "DB_TLS", "closed the connection during the TLS handshake"},
		{"no client certificate", mutual, tlsconf.Config{Enabled: true, CAFile: ca.File}, "DB_TLS_CERT_FILE", "DB_TLS_CERT_FILE (or its absence) was refused by the server"},
		{"client certificate of another CA", mutual, tlsconf.Config{Enabled: true, CAFile: ca.File, CertFile: stranger.CertFile, KeyFile: stranger.KeyFile},
			"DB_TLS_CERT_FILE", "DB_TLS_CERT_FILE (or its absence) was refused by the server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := tt.c.Load(names)
			if err != nil {
				t.Fatal(err)
			}
			dial := tlsconf.Dialer(&net.Dialer{Timeout: 5 * time.Second}, tc, tt.c, names)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = exchange(ctx, dial, tt.addr)
			// With TLS 1.3 a refused client certificate shows on the first
			// read, as the client libraries see it: Refused explains it.
			err = tlsconf.Refused(err, names)
			if tt.setting == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var se *tlsconf.SettingError
			if !errors.As(err, &se) || se.Setting != tt.setting || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("error %v\nwant a SettingError for %s saying %q", err, tt.setting, tt.says)
			}
		})
	}
}

// exchange dials addr, writes a byte and reads it back.
func exchange(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string) error {
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	return err
}

func TestLoadNamesTheFile(t *testing.T) {
	ca := testenv.NewCA(t, "test CA")
	cert := ca.Client("c")
	tests := []struct {
		name string
		c    tlsconf.Config
		want string
	}{
		{"off", tlsconf.Config{CAFile: "/nonexistent"}, ""}, // Load returns nil: TLS is off (Validate refuses it)
		{"missing CA", tlsconf.Config{Enabled: true, CAFile: "/nonexistent/ca.pem"}, "DB_TLS_CA_FILE: open /nonexistent/ca.pem"},
		{"key as CA", tlsconf.Config{Enabled: true, CAFile: cert.KeyFile}, "DB_TLS_CA_FILE: " + cert.KeyFile + " holds no PEM certificate"},
		{"missing key", tlsconf.Config{Enabled: true, CertFile: cert.CertFile, KeyFile: "/nonexistent/key.pem"}, "DB_TLS_CERT_FILE/DB_TLS_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := tt.c.Load(names)
			if tt.want == "" {
				if err != nil || tc != nil {
					t.Fatalf("Load() = %v, %v; want nil, nil", tc, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load() error %v, want %q", err, tt.want)
			}
		})
	}
}
