package main

import (
	"context"

	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/lcapp"
)

// appEnv reads the LiveChat app variables (recording them for --help).
// configured is false when neither a client id nor a client secret is set:
// the OAuth install is then off and ingest runs on static secrets alone.
func appEnv(inv *invocation) (cfg lcapp.Config, configured bool) {
	cfg = lcapp.DefaultConfig()
	oauthEnv(inv, &cfg, true)
	cfg.EncryptionKey = secret.Secret(inv.String("APP_ENCRYPTION_KEY", "", "32-byte key (base64 or hex) sealing stored tokens with AES-GCM; required when OAuth is configured (openssl rand -base64 32)"))
	cfg.StorePath = inv.String("APP_STORE_PATH", cfg.StorePath, "bbolt file of installations and webhook registrations (shared by ingest, processor and `lcpipe webhooks`)")
	if acts := inv.List("LIVECHAT_WEBHOOK_ACTIONS", "", "webhook actions to register, comma-separated (default: every v3.6 action)"); len(acts) > 0 {
		cfg.Actions = acts
	}
	cfg.DirectoryRefresh = inv.Duration("LIVECHAT_DIRECTORY_REFRESH", cfg.DirectoryRefresh, "how often agent and group names are re-listed")
	return cfg, cfg.ClientID != "" || cfg.ClientSecret != ""
}

// oauthEnv reads the LiveChat app's OAuth variables into cfg (the part the
// dashboards' sign-in needs too); withBase adds PUBLIC_BASE_URL (ingest's).
func oauthEnv(inv *invocation, cfg *lcapp.Config, withBase bool) {
	cfg.ClientID = inv.String("LIVECHAT_CLIENT_ID", "", "Client ID of the server-side LiveChat app (Developer Console); enables the settings page and OAuth install")
	cfg.ClientSecret = secret.Secret(inv.String("LIVECHAT_CLIENT_SECRET", "", "Client Secret of the LiveChat app"))
	if withBase {
		cfg.PublicBaseURL = inv.String("PUBLIC_BASE_URL", "", "public https URL of ingest: webhooks go to it + /webhooks/livechat, OAuth returns to it + /livechat/app/callback")
	}
	cfg.AccountsURL = inv.String("LIVECHAT_ACCOUNTS_URL", cfg.AccountsURL, "LiveChat accounts (OAuth) service base URL")
	cfg.APIURL = inv.String("LIVECHAT_API_URL", cfg.APIURL, "LiveChat API base URL, with version")
}

// setupApp reads the LiveChat app configuration and builds the app, with
// its directory refresh running until ctx ends (Close stops it too). It
// returns nil, nil when OAuth is not configured, and an error when it is
// but incomplete — in particular without APP_ENCRYPTION_KEY, so tokens are
// never stored unencrypted.
//
// Call it before inv.parse() so --help lists its variables; it opens no file
// and calls no network until used.
func setupApp(ctx context.Context, inv *invocation) (*lcapp.App, error) {
	cfg, configured := appEnv(inv)
	if !configured {
		return nil, nil
	}
	app, err := lcapp.New(cfg, inv.log.With("component", "lcapp"))
	if err != nil {
		return nil, err
	}
	app.Start(ctx)
	return app, nil
}
