package lcapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/lcpipe/lcpipe/internal/secret"
)

// tokenInfo is GET /v2/info (oauth.md §3.7).
type tokenInfo struct {
	AccountID      string `json:"account_id"`
	ClientID       string `json:"client_id"`
	ExpiresIn      int    `json:"expires_in"`
	OrganizationID string `json:"organization_id"`
	Scope          string `json:"scope"`
}

// errTokenInvalid: the accounts service does not know the token (revoked/expired).
var errTokenInvalid = errors.New("access token is not valid at LiveChat accounts")

func (a *App) accounts(ctx context.Context, method, path string, token secret.Secret) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.cfg.AccountsURL, "/")+path, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token.Reveal())
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("lcapp: accounts %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, body, err
}

// info validates an access token (and that it belongs to our Client ID).
func (a *App) info(ctx context.Context, token secret.Secret) (*tokenInfo, error) {
	resp, body, err := a.accounts(ctx, http.MethodGet, "/v2/info", token)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusNotFound:
		return nil, errTokenInvalid
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("lcapp: accounts token info: HTTP %d", resp.StatusCode)
	}
	var ti tokenInfo
	if err := json.Unmarshal(body, &ti); err != nil {
		return nil, fmt.Errorf("lcapp: accounts token info: decode: %w", err)
	}
	return &ti, nil
}

// revoke revokes an access token and its paired refresh token (§3.6);
// an unknown token (404) counts as revoked.
func (a *App) revoke(ctx context.Context, token secret.Secret) error {
	if token == "" {
		return nil
	}
	resp, _, err := a.accounts(ctx, http.MethodDelete, "/v2/token", token)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("lcapp: accounts revoke: HTTP %d", resp.StatusCode)
	}
	return nil
}
