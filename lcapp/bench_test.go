package lcapp

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/lcpipe/lcpipe/internal/secret"
)

// BenchmarkWebhookSecrets measures the ingest hot path: the secret lookup
// answered from the in-memory snapshot (what WebhookSecrets does) against
// reading the bbolt file for every webhook (what the snapshot saves).
func BenchmarkWebhookSecrets(b *testing.B) {
	cfg := DefaultConfig()
	cfg.ClientID, cfg.ClientSecret, cfg.PublicBaseURL = testClientID, "cs", "https://lcpipe.example.com"
	cfg.EncryptionKey = secret.Secret(randomKey())
	cfg.StorePath = filepath.Join(b.TempDir(), "lcapp.db")
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
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if s, err := a.WebhookSecrets(ctx, testOrg); err != nil || len(s) != 1 {
				b.Fatal(s, err)
			}
		}
	})
	b.Run("store-per-webhook", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if orgs, _, reg, err := a.store.snapshot(testClientID); err != nil || !orgs[testOrg] || reg == nil {
				b.Fatal(err)
			}
		}
	})
}
