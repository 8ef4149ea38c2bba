package kafka_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/tlsconf"
)

func TestValidateSecurity(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*kafka.Config)
		want   string
	}{
		{"tls with a CA", func(c *kafka.Config) { c.TLS = tlsconf.Config{Enabled: true, CAFile: "ca.pem"} }, ""},
		{"scram", func(c *kafka.Config) {
			c.SASL = kafka.SASLConfig{Mechanism: "scram-sha-512", Username: "u", Password: "p"}
		}, ""},
		{"unknown mechanism", func(c *kafka.Config) { c.SASL = kafka.SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: "p"} }, "KAFKA_SASL_MECHANISM"},
		{"no username", func(c *kafka.Config) { c.SASL = kafka.SASLConfig{Mechanism: "PLAIN", Password: "p"} }, "needs KAFKA_SASL_USERNAME"},
		{"no password", func(c *kafka.Config) { c.SASL = kafka.SASLConfig{Mechanism: "SCRAM-SHA-256", Username: "u"} }, "needs KAFKA_SASL_PASSWORD"},
		{"credentials without mechanism", func(c *kafka.Config) { c.SASL = kafka.SASLConfig{Username: "u", Password: "p"} }, "KAFKA_SASL_MECHANISM is empty"},
		{"CA without TLS", func(c *kafka.Config) { c.TLS = tlsconf.Config{CAFile: "ca.pem"} }, "KAFKA_TLS_CA_FILE is set but KAFKA_TLS is off"},
		{"server name without TLS", func(c *kafka.Config) { c.TLS = tlsconf.Config{ServerName: "kafka"} }, "KAFKA_TLS_SERVER_NAME is set but KAFKA_TLS is off"},
		{"certificate without key", func(c *kafka.Config) { c.TLS = tlsconf.Config{Enabled: true, CertFile: "c.pem"} }, "KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kafka.DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestNewClientReadsTLSFiles: NewClient loads the CA and client
// certificate, and an unreadable or wrong file fails it naming the setting.
func TestNewClientReadsTLSFiles(t *testing.T) {
	ca := testenv.NewCA(t, "files CA")
	client := ca.Client("files client")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		tls  tlsconf.Config
		want string
	}{
		{"CA and client certificate", tlsconf.Config{Enabled: true, CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile}, ""},
		{"system roots", tlsconf.Config{Enabled: true}, ""},
		{"missing CA file", tlsconf.Config{Enabled: true, CAFile: "/nonexistent/ca.pem"}, "KAFKA_TLS_CA_FILE"},
		{"CA file without certificate", tlsconf.Config{Enabled: true, CAFile: notPEM}, "KAFKA_TLS_CA_FILE"},
		{"key of another certificate", tlsconf.Config{Enabled: true, CertFile: client.CertFile, KeyFile: ca.Client("other").KeyFile}, "KAFKA_TLS_CERT_FILE/KAFKA_TLS_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kafka.DefaultConfig()
			c.TLS = tt.tls
			cl, err := kafka.NewClient(c)
			if cl != nil {
				cl.Close()
			}
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("NewClient() = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSecureBroker runs clients against a broker with a SASL_SSL listener
// that also requires a client certificate (mutual TLS; all certificates
// made by the test): every SASL mechanism works over it, and each wrong
// setting fails Ping and EnsureTopics with a *kafka.SettingError naming it.
// (TLS without a client certificate is what cmd/lcpipe's TestSecureServices
// runs the pipeline over.)
func TestSecureBroker(t *testing.T) {
	ca := testenv.NewCA(t, "lcpipe test CA")
	other := testenv.NewCA(t, "some other CA")
	const user, password = "pipeline", "pipeline-secret"
	broker := testenv.PrivateSecureKafka(t, testenv.SecureKafka{
		Server:   ca.Server("broker", "localhost", "127.0.0.1"),
		Users:    map[string]string{user: password, "analyst": "analyst-secret"},
		ClientCA: ca.File,
	})
	client := ca.Client("pipeline client")
	secure := func(mech string) kafka.Config {
		c := kafka.DefaultConfig()
		c.Brokers = []string{broker.SecureAddr}
		c.RawTopic, c.DLQTopic = testenv.Name(t, "raw"), testenv.Name(t, "dlq")
		c.Partitions = 1
		c.TLS = tlsconf.Config{Enabled: true, CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile}
		c.SASL = kafka.SASLConfig{Mechanism: mech, Username: user, Password: secret.Secret(password)}
		return c
	}

	t.Run("works", func(t *testing.T) {
		tests := []struct {
			name   string
			mutate func(*kafka.Config)
		}{
			{"PLAIN", func(c *kafka.Config) { c.SASL.Mechanism = kafka.SASLPlain }},
			{"SCRAM-SHA-256", func(c *kafka.Config) {}},
			{"SCRAM-SHA-512", func(c *kafka.Config) { c.SASL.Mechanism = kafka.SASLScramSHA512 }},
			{"server name", func(c *kafka.Config) { c.TLS.ServerName = "localhost" }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := secure(kafka.SASLScramSHA256)
				tt.mutate(&c)
				if err := c.Validate(); err != nil {
					t.Fatal(err)
				}
				roundTrip(t, c)
			})
		}
	})

	t.Run("wrong settings", func(t *testing.T) {
		stranger := other.Client("stranger")
		tests := []struct {
			name    string
			mutate  func(*kafka.Config)
			setting string
			says    string
		}{
			{"wrong password", func(c *kafka.Config) { c.SASL.Password = "not-the-password" },
				"KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD rejected by the broker"},
			{"wrong password PLAIN", func(c *kafka.Config) { c.SASL.Mechanism, c.SASL.Password = kafka.SASLPlain, "nope" },
				"KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD rejected by the broker"},
			{"unknown user", func(c *kafka.Config) { c.SASL.Username = "nobody" },
				"KAFKA_SASL_PASSWORD", "KAFKA_SASL_USERNAME unknown"},
			{"untrusted certificate", func(c *kafka.Config) { c.TLS.CAFile = other.File },
				"KAFKA_TLS_CA_FILE", "KAFKA_TLS_CA_FILE does not trust the broker's certificate"},
			{"system roots", func(c *kafka.Config) { c.TLS.CAFile = "" },
				"KAFKA_TLS_CA_FILE", "KAFKA_TLS_CA_FILE is not set and the system's CAs do not trust the broker's certificate"},
			{"server name", func(c *kafka.Config) { c.TLS.ServerName = "kafka.example.com" },
				"KAFKA_TLS_SERVER_NAME", `KAFKA_TLS_SERVER_NAME "kafka.example.com" does not match the broker's certificate`},
			{"client certificate of another CA", func(c *kafka.Config) { c.TLS.CertFile, c.TLS.KeyFile = stranger.CertFile, stranger.KeyFile },
				"KAFKA_TLS_CERT_FILE", "KAFKA_TLS_CERT_FILE (or its absence) was refused by the broker"},
			{"no client certificate", func(c *kafka.Config) { c.TLS.CertFile, c.TLS.KeyFile = "", "" },
				"KAFKA_TLS_CERT_FILE", "KAFKA_TLS_CERT_FILE (or its absence) was refused by the broker"},
			{"TLS to the plaintext listener", func(c *kafka.Config) { c.Brokers = []string{broker.Addr} },
				"KAFKA_TLS", "KAFKA_TLS is on but the broker"},
			{"SASL on the plaintext listener", func(c *kafka.Config) { c.Brokers, c.TLS = []string{broker.Addr}, tlsconf.Config{} },
				"KAFKA_SASL_MECHANISM", "KAFKA_SASL_MECHANISM"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := secure(kafka.SASLScramSHA256)
				tt.mutate(&c)
				cl := testenv.KafkaClient(t, c)
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				for what, err := range map[string]error{
					"Ping":         kafka.Ping(ctx, cl),
					"EnsureTopics": kafka.EnsureTopics(ctx, cl, c, nil, c.RawTopic),
				} {
					t.Logf("%s: %v", what, err)
					var se *kafka.SettingError
					if !errors.As(err, &se) || se.Setting != tt.setting || !strings.Contains(err.Error(), tt.says) {
						t.Errorf("%s: error %v\nwant a SettingError for %s saying %q", what, err, tt.setting, tt.says)
					}
				}
			})
		}
	})
}

// roundTrip creates c's raw topic, produces a record to it and reads it
// back.
func roundTrip(t *testing.T, c kafka.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := testenv.KafkaClient(t, c, kgo.ConsumeTopics(c.RawTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err := kafka.Ping(ctx, cl); err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureTopics(ctx, cl, c, nil, c.RawTopic); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: c.RawTopic, Value: []byte("over TLS")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("record not read back: %v", err)
		}
		for _, r := range fs.Records() {
			if string(r.Value) == "over TLS" {
				return
			}
		}
	}
}
