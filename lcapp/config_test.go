package lcapp

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/secret"
)

// Zero fields take the documented defaults; set ones are kept.
func TestWithDefaults(t *testing.T) {
	d := DefaultConfig()
	set := Config{AccountsURL: "http://a", APIURL: "http://b/v3.6", StorePath: "x.db", Actions: []string{"incoming_chat"},
		DirectoryRefresh: time.Second, SecretCacheTTL: 2 * time.Second, HTTPTimeout: 3 * time.Second,
		StoreLockTimeout: 4 * time.Second, SessionTTL: 5 * time.Second}
	tests := []struct {
		name     string
		in, want Config
	}{
		{"zero", Config{}, d},
		{"set", set, set},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		if got.AccountsURL != tt.want.AccountsURL || got.APIURL != tt.want.APIURL || got.StorePath != tt.want.StorePath ||
			!slices.Equal(got.Actions, tt.want.Actions) || got.DirectoryRefresh != tt.want.DirectoryRefresh ||
			got.SecretCacheTTL != tt.want.SecretCacheTTL || got.HTTPTimeout != tt.want.HTTPTimeout ||
			got.StoreLockTimeout != tt.want.StoreLockTimeout || got.SessionTTL != tt.want.SessionTTL || got.Now == nil {
			t.Errorf("%s: withDefaults() = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// A nil logger discards: the constructors must not keep a nil one (a
// log line would panic).
func TestNilLogger(t *testing.T) {
	cfg := Config{ClientID: "id", ClientSecret: "secret", PublicBaseURL: "https://lcpipe.example.com",
		EncryptionKey: secret.Secret(randomKey()), StorePath: filepath.Join(t.TempDir(), "app.db")}
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.log == nil {
		t.Fatal("New(cfg, nil) kept a nil logger")
	}
	a.log.Info("discarded")
	f, err := NewSignInFlow(cfg, "https://dash.example.com/callback", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.app.log == nil {
		t.Fatal("NewSignInFlow(cfg, url, nil) kept a nil logger")
	}
}
