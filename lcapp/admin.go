package lcapp

import (
	"context"
	"errors"
	"fmt"

	"github.com/lcpipe/lcpipe/internal/secret"
)

// ErrNotAdministrator: the LiveChat user is not an owner, vice owner or
// administrator of the organization (or not one of its agents at all).
var ErrNotAdministrator = errors.New("not an administrator of the organization")

// adminRoles may administer an organization: list_agents answers "owner"
// for the owner and the settable roles are viceowner, administrator and
// normal (configuration-api.md §4.1). Anything else, a role LiveChat may
// add later included, is not an administrator.
var adminRoles = map[string]bool{"owner": true, "viceowner": true, "administrator": true}

// agentRole is the part of a list_agents entry the check reads.
type agentRole struct {
	ID        string `json:"id"`
	AccountID string `json:"account_id"`
	Role      string `json:"role"`
}

// administrator finds the account in the organization's agents and returns
// its role when it administers the organization, ErrNotAdministrator
// otherwise. Why list_agents: the docs make an administrator-level scope
// fail with invalid_scope for other users at authorization (oauth.md §2),
// but that is the accounts service's rule about scopes, stated once, and an
// app configured without such scopes would let anyone through. list_agents
// (agents--all:ro, in the app's scopes) names every agent's account_id and
// role, so the answer comes from LiveChat for this very account. An entry
// without account_id cannot match: the check fails closed.
func administrator(agents []agentRole, account string) (string, error) {
	if account == "" {
		return "", fmt.Errorf("%w: the token names no account", ErrNotAdministrator)
	}
	for _, ag := range agents {
		if ag.AccountID != account {
			continue
		}
		if adminRoles[ag.Role] {
			return ag.Role, nil
		}
		return "", fmt.Errorf("%w (LiveChat role %q)", ErrNotAdministrator, ag.Role)
	}
	return "", fmt.Errorf("%w: the account is not among its agents", ErrNotAdministrator)
}

// administratorByToken checks, with a token just issued to the account
// (sign-in, before anything is stored), that the account administers the
// token's organization.
func (a *App) administratorByToken(ctx context.Context, token secret.Secret, account string) (string, error) {
	var agents []agentRole
	if err := a.postToken(ctx, "list_agents", token, []byte(`{}`), &agents); err != nil {
		return "", fmt.Errorf("could not confirm that the account administers the organization: %w", err)
	}
	return administrator(agents, account)
}

// administratorOf checks the same with the organization's stored token
// (Disconnect: the role may have changed since the browser signed in).
func (a *App) administratorOf(ctx context.Context, org, account string) (string, error) {
	var agents []agentRole
	if err := a.call(ctx, org, "list_agents", nil, &agents); err != nil {
		return "", fmt.Errorf("could not confirm that the account administers the organization: %w", err)
	}
	return administrator(agents, account)
}

// postToken calls a Configuration API method with a token that is not (yet)
// stored: the region comes from the token's prefix, and a
// misdirected_request is retried once in the region it names.
func (a *App) postToken(ctx context.Context, method string, token secret.Secret, body []byte, out any) error {
	region := regionOf(token.Reveal(), "")
	err := a.post(ctx, method, token, region, body, out)
	var ae *APIError
	if errors.As(err, &ae) && ae.Type == "misdirected_request" && ae.Region != "" && ae.Region != region {
		err = a.post(ctx, method, token, ae.Region, body, out)
	}
	return err
}
