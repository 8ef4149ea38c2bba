package lcapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lcpipe/lcpipe/internal/backoff"
	"github.com/lcpipe/lcpipe/internal/secret"
)

// APIError is an error body of the Configuration API
// ({"error": {"type", "message", "data"}}), with the HTTP status.
type APIError struct {
	Method  string
	Status  int
	Type    string
	Message string
	Region  string // data.region of misdirected_request
}

func (e *APIError) Error() string {
	return fmt.Sprintf("configuration API %s: HTTP %d %s: %s", e.Method, e.Status, e.Type, e.Message)
}

// IsAPIError reports whether err is an APIError of the given type
// ("authorization", "authentication", "not_found", ...).
func IsAPIError(err error, typ string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Type == typ
}

// call POSTs one Configuration API method with the organization's token.
// An "authentication" error (expired or revoked token) refreshes the token
// once and retries; misdirected_request retries once in the region named by
// the error and remembers it; transient failures (retryable) are retried up
// to 3 times with jittered exponential back-off. out may be nil.
func (a *App) call(ctx context.Context, org, method string, in, out any) error {
	if in == nil {
		in = struct{}{}
	}
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("lcapp: %s: encode request: %w", method, err)
	}
	stale, region, moved, transient := "", "", false, 0
	for {
		rec, err := a.tokens.token(ctx, org, stale)
		if err != nil {
			return fmt.Errorf("lcapp: %s for organization %s: %w", method, org, err)
		}
		if region == "" {
			region = rec.Region
		}
		err = a.post(ctx, method, secret.Secret(rec.AccessToken), region, body, out)
		var ae *APIError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ae) && ae.Type == "authentication" && stale == "":
			stale = rec.AccessToken
			continue
		case errors.As(err, &ae) && ae.Type == "misdirected_request" && ae.Region != "" && ae.Region != region && !moved:
			region, moved = ae.Region, true
			_ = a.store.modifyInstallation(org, func(r *installationRecord) { r.Region = region })
			continue
		case backoff.Retryable(err) && transient < maxTransientRetries:
			if werr := callBackoff.Wait(ctx, transient); werr != nil {
				return fmt.Errorf("%w (gave up waiting to retry: %w)", err, werr)
			}
			transient++
			continue
		}
		return err
	}
}

const maxTransientRetries = 3

// callBackoff spaces the retries of transient failures: 200 ms, 400 ms,
// 800 ms, with jitter.
var callBackoff = backoff.Policy{Min: 200 * time.Millisecond, Max: 2 * time.Second}

// Retryable says which API failures are worth repeating (backoff.Retryable
// asks it): rate limiting, LiveChat's internal errors and 5xx. Everything
// else (validation, authorization, not_found, ...) is permanent. Network
// errors are not APIErrors: backoff.Retryable repeats them.
func (e *APIError) Retryable() bool {
	return e.Type == "too_many_requests" || e.Type == "internal" || e.Status >= 500
}

func (a *App) post(ctx context.Context, method string, token secret.Secret, region string, body []byte, out any) error {
	u := strings.TrimRight(a.cfg.APIURL, "/") + "/configuration/action/" + method
	ctx, cancel := context.WithTimeout(ctx, a.cfg.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("lcapp: %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token.Reveal())
	}
	if region != "" && region != "dal" {
		req.Header.Set("X-Region", region)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("lcapp: configuration API %s: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("lcapp: configuration API %s: read response: %w", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
				Data    struct {
					Region string `json:"region"`
				} `json:"data"`
			} `json:"error"`
		}
		ae := &APIError{Method: method, Status: resp.StatusCode}
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Type != "" {
			ae.Type, ae.Message, ae.Region = eb.Error.Type, eb.Error.Message, eb.Error.Data.Region
		} else {
			ae.Type, ae.Message = "http", http.StatusText(resp.StatusCode)
		}
		return ae
	}
	if out == nil || len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("lcapp: configuration API %s: decode response: %w", method, err)
	}
	return nil
}

// RegisteredWebhook is one entry of list_webhooks.
type RegisteredWebhook struct {
	ID            string          `json:"id"`
	URL           string          `json:"url"`
	Description   string          `json:"description"`
	Action        string          `json:"action"`
	Filters       json.RawMessage `json:"filters,omitempty"`
	OwnerClientID string          `json:"owner_client_id"`
	Type          string          `json:"type"`
}

func (a *App) listWebhooks(ctx context.Context, org string) ([]RegisteredWebhook, error) {
	var out []RegisteredWebhook
	err := a.call(ctx, org, "list_webhooks", map[string]string{"owner_client_id": a.cfg.ClientID}, &out)
	return out, err
}

func (a *App) registerWebhook(ctx context.Context, org, action string, key secret.Secret) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	err := a.call(ctx, org, "register_webhook", map[string]any{
		"action": action, "secret_key": key.Reveal(), "url": a.WebhookURL(),
		"owner_client_id": a.cfg.ClientID, "type": "license", "description": "lcpipe analytics",
	}, &out)
	if err == nil && out.ID == "" {
		err = fmt.Errorf("lcapp: register_webhook %s: response without id", action)
	}
	return out.ID, err
}

func (a *App) unregisterWebhook(ctx context.Context, org, id string) error {
	return a.call(ctx, org, "unregister_webhook", map[string]string{"id": id, "owner_client_id": a.cfg.ClientID}, nil)
}

func (a *App) licenseWebhooksEnabled(ctx context.Context, org string) (bool, error) {
	var out struct {
		Enabled bool `json:"license_webhooks_enabled"`
	}
	err := a.call(ctx, org, "get_license_webhooks_state", map[string]string{"owner_client_id": a.cfg.ClientID}, &out)
	return out.Enabled, err
}

func (a *App) setLicenseWebhooks(ctx context.Context, org string, enable bool) error {
	m := "disable_license_webhooks"
	if enable {
		m = "enable_license_webhooks"
	}
	return a.call(ctx, org, m, map[string]string{"owner_client_id": a.cfg.ClientID}, nil)
}
