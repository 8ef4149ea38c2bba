package chconn_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/tlsconf"
)

func TestValidateTLS(t *testing.T) {
	tests := []struct {
		name string
		tls  tlsconf.Config
		want string
	}{
		{"on", tlsconf.Config{Enabled: true, CAFile: "ca.pem", ServerName: "ch"}, ""},
		{"CA while off", tlsconf.Config{CAFile: "ca.pem"}, "CLICKHOUSE_TLS_CA_FILE is set but CLICKHOUSE_TLS is off"},
		{"certificate without key", tlsconf.Config{Enabled: true, CertFile: "c.pem"}, "CLICKHOUSE_TLS_CERT_FILE and CLICKHOUSE_TLS_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := chconn.DefaultConfig()
			c.TLS = tt.tls
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestOpenOverTLS connects to a ClickHouse's TLS native port (certificate
// made by the test): with the CA that signed it a query runs; with another
// CA, Open fails with a SettingError naming CLICKHOUSE_TLS_CA_FILE.
func TestOpenOverTLS(t *testing.T) {
	ca := testenv.NewCA(t, "test CA")
	other := testenv.NewCA(t, "other CA")
	srv := testenv.PrivateSecureClickHouse(t, ca.Server("clickhouse", "localhost", "127.0.0.1"))
	cfg := chconn.DefaultConfig()
	cfg.Addr = []string{srv.SecureAddr}
	cfg.TLS = tlsconf.Config{Enabled: true, CAFile: ca.File}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chconn.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var one uint8
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 over TLS: %v, %d", err, one)
	}

	cfg.TLS.CAFile = other.File
	_, err = chconn.Open(ctx, cfg)
	var se *tlsconf.SettingError
	if !errors.As(err, &se) || se.Setting != "CLICKHOUSE_TLS_CA_FILE" || !strings.Contains(err.Error(), "CLICKHOUSE_TLS_CA_FILE does not trust the server's certificate") {
		t.Fatalf("Open with another CA: %v", err)
	}
}
