package lcapp

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWebhookSecrets measures the ingest hot path: the secret lookup
// answered from the cache (default, reloaded every SecretCacheTTL) against a
// reload from the bbolt file on every call (what the cache saves).
func BenchmarkWebhookSecrets(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"cached", 5 * time.Second}, {"store-every-call", time.Nanosecond}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.ClientID, cfg.ClientSecret, cfg.PublicBaseURL = testClientID, "cs", "https://lcpipe.example.com"
			cfg.EncryptionKey = Secret(randomKey())
			cfg.StorePath = filepath.Join(b.TempDir(), "lcapp.db")
			cfg.SecretCacheTTL = bc.ttl
			a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			if err := a.store.saveInstallation(&installationRecord{OrganizationID: testOrg, AccessToken: "x"}); err != nil {
				b.Fatal(err)
			}
			if err := a.store.saveRegistration(&registrationRecord{ClientID: testClientID, Secret: "s", IDs: map[string]string{}}); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				s, err := a.WebhookSecrets(ctx, testOrg)
				if err != nil || len(s) != 1 {
					b.Fatal(s, err)
				}
			}
		})
	}
}
