package lcapp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/lcpipe/lcpipe/internal/secret"
)

// Reconciliation is what Reconcile found and did.
type Reconciliation struct {
	Registered   []string // actions registered now
	Kept         []string // actions whose registration already existed
	Removed      []string // webhook ids of duplicates or stale actions unregistered
	Enabled      bool     // license webhooks had to be (re-)enabled
	Registration string   // why registration was skipped, when it was
}

func newSecret() secret.Secret {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return secret.Secret(base64.RawURLEncoding.EncodeToString(b))
}

// Reconcile makes LiveChat hold exactly one license registration per
// configured action pointing at WebhookURL with the stored secret, using the
// organization's token, then makes sure license webhooks are enabled for the
// organization. It lists first, so running it again (re-install, restart,
// `lcpipe webhooks register`) never registers a second copy. Registrations
// at our URL whose secret we do not hold (a lost store) and actions no longer
// configured are unregistered. When the organization cannot manage the
// Client ID's webhooks (it is not the app owner's organization, or the token
// lacks webhooks.configuration:rw) registration is skipped with the reason
// and only the license state is handled.
//
// Runs are serialized across the processes sharing the store
// (lockRegistrations): two at once would each make a secret, and the one
// saved last need not be the one LiveChat holds — every webhook would then
// be refused.
func (a *App) Reconcile(ctx context.Context, org string) (Reconciliation, error) {
	var res Reconciliation
	unlock, err := a.lockRegistrations(ctx)
	if err != nil {
		return res, err
	}
	defer unlock()
	listed, err := a.listWebhooks(ctx, org)
	switch {
	case IsAPIError(err, "authorization"):
		res.Registration = err.Error()
		a.log.Warn("cannot manage webhook registrations with this organization's token; skipping registration", "organization_id", org, "err", err)
	case err != nil:
		return res, err
	default:
		if err := a.reconcileRegistrations(ctx, org, listed, &res); err != nil {
			return res, err
		}
	}
	enabled, err := a.licenseWebhooksEnabled(ctx, org)
	if err != nil {
		return res, err
	}
	if !enabled {
		if err := a.setLicenseWebhooks(ctx, org, true); err != nil {
			return res, err
		}
		res.Enabled = true
	}
	a.secrets.invalidate()
	return res, nil
}

// lockRegistrations serializes everything that changes the registration
// set (Reconcile, Unregister, the last Uninstall) across the processes
// sharing the store (ingest, the processor, `lcpipe webhooks`), with a file
// lock beside it like the token refreshes (tokens.go), and in the process
// with a mutex. It waits until the holder is done or ctx ends.
func (a *App) lockRegistrations(ctx context.Context) (unlock func(), err error) {
	if !a.regMu.TryLock() {
		if a.lockWaited != nil {
			a.lockWaited()
		}
		a.regMu.Lock()
	}
	unlockFile, err := lockFile(ctx, a.store.path+".registrations.lock", a.lockWaited)
	if err != nil {
		a.regMu.Unlock()
		return nil, fmt.Errorf("lcapp: webhook registrations: %w", err)
	}
	return func() { unlockFile(); a.regMu.Unlock() }, nil
}

// rotate makes a new registration secret and stores it, with the current
// one as the previous secret, before LiveChat is given it; then it waits
// one SecretCacheTTL so every process's webhook-secret cache (reloaded when
// older than that) knows it before the first delivery signed with it.
func (a *App) rotate(ctx context.Context, old *registrationRecord) (*registrationRecord, error) {
	reg := &registrationRecord{ClientID: a.cfg.ClientID, URL: a.WebhookURL(), Secret: newSecret().Reveal(), IDs: map[string]string{}, UpdatedAt: a.cfg.Now()}
	if old != nil && old.Secret != "" {
		reg.Previous, reg.PreviousUntil = old.Secret, a.cfg.Now().Add(previousSecretGrace)
	}
	if err := a.store.saveRegistration(reg); err != nil {
		return nil, err
	}
	a.secrets.invalidate()
	t := time.NewTimer(a.cfg.SecretCacheTTL)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, fmt.Errorf("lcapp: webhook registrations: %w", ctx.Err())
	}
	return reg, nil
}

func (a *App) reconcileRegistrations(ctx context.Context, org string, listed []RegisteredWebhook, res *Reconciliation) error {
	reg, err := a.store.loadRegistration(a.cfg.ClientID)
	if err != nil {
		return err
	}
	ours := map[string]bool{a.WebhookURL(): true}
	if reg != nil && reg.URL != a.WebhookURL() {
		ours[reg.URL] = true // the public URL moved: the old registrations go
	}
	if reg == nil || reg.URL != a.WebhookURL() {
		// First install, or the public URL moved: a fresh secret, and every
		// registration at our URL is re-made with it.
		if reg, err = a.rotate(ctx, reg); err != nil {
			return err
		}
	}
	if reg.Previous != "" && !a.cfg.Now().Before(reg.PreviousUntil) {
		reg.Previous, reg.PreviousUntil = "", time.Time{}
	}
	want := map[string]bool{}
	for _, act := range a.cfg.Actions {
		want[act] = true
	}
	kept := map[string]string{}
	var stale []RegisteredWebhook
	for _, w := range listed {
		if !ours[w.URL] || w.OwnerClientID != a.cfg.ClientID {
			continue // not ours (another URL, e.g. another environment): leave alone
		}
		if want[w.Action] && w.Type == "license" && reg.IDs[w.Action] == w.ID && kept[w.Action] == "" {
			kept[w.Action] = w.ID
			continue
		}
		stale = append(stale, w)
	}
	removed := map[string]bool{}
	unregister := func(w RegisteredWebhook) error {
		if removed[w.ID] {
			return nil
		}
		if err := a.unregisterWebhook(ctx, org, w.ID); err != nil && !IsAPIError(err, "not_found") {
			return err
		}
		removed[w.ID] = true
		res.Removed = append(res.Removed, w.ID)
		return nil
	}
	// New registrations first, stale ones after: while the public URL moves
	// both deliver (the processor drops the duplicates), so no event falls
	// in a gap; both secrets are accepted meanwhile (rotate).
	ids := map[string]string{}
	var errs []error
	for _, act := range a.cfg.Actions {
		if id := kept[act]; id != "" {
			ids[act] = id
			res.Kept = append(res.Kept, act)
			continue
		}
		id, err := a.registerWebhook(ctx, org, act, secret.Secret(reg.Secret))
		if IsAPIError(err, "limit_reached") {
			// At most 3 per action: make room with this action's stale ones.
			var uerr error
			for _, w := range stale {
				if w.Action == act && uerr == nil {
					uerr = unregister(w)
				}
			}
			if uerr != nil {
				err = uerr
			} else {
				id, err = a.registerWebhook(ctx, org, act, secret.Secret(reg.Secret))
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ids[act] = id
		res.Registered = append(res.Registered, act)
	}
	reg.IDs, reg.UpdatedAt = ids, a.cfg.Now()
	// Save even after a partial failure: what was registered must be known,
	// or the next reconcile would see it as foreign and re-make it.
	if err := a.store.saveRegistration(reg); err != nil {
		return err
	}
	for _, w := range stale {
		if err := unregister(w); err != nil {
			errs = append(errs, err)
		}
	}
	a.log.Info("webhook registrations reconciled", "organization_id", org, "registered", len(res.Registered),
		"kept", len(res.Kept), "removed", len(res.Removed), "failed", len(errs))
	return errors.Join(errs...)
}

// Webhooks lists the Client ID's registrations as LiveChat holds them, with
// whether each is ours (our URL and an id we hold the secret for).
func (a *App) Webhooks(ctx context.Context, org string) ([]RegisteredWebhook, map[string]bool, error) {
	listed, err := a.listWebhooks(ctx, org)
	if err != nil {
		return nil, nil, err
	}
	ours := map[string]bool{}
	reg, err := a.store.loadRegistration(a.cfg.ClientID)
	if err != nil {
		return nil, nil, err
	}
	if reg != nil {
		for _, id := range reg.IDs {
			ours[id] = true
		}
	}
	sort.Slice(listed, func(i, j int) bool { return listed[i].Action < listed[j].Action })
	return listed, ours, nil
}

// Unregister removes every registration of the Client ID at our URL and
// forgets the registration secret. It returns the ids removed.
func (a *App) Unregister(ctx context.Context, org string) ([]string, error) {
	unlock, err := a.lockRegistrations(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return a.unregister(ctx, org)
}

// unregister is Unregister under lockRegistrations.
func (a *App) unregister(ctx context.Context, org string) ([]string, error) {
	listed, err := a.listWebhooks(ctx, org)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, w := range listed {
		if w.URL != a.WebhookURL() || w.OwnerClientID != a.cfg.ClientID {
			continue
		}
		if err := a.unregisterWebhook(ctx, org, w.ID); err != nil && !IsAPIError(err, "not_found") {
			return removed, err
		}
		removed = append(removed, w.ID)
	}
	if err := a.store.deleteRegistration(a.cfg.ClientID); err != nil {
		return removed, err
	}
	a.secrets.invalidate()
	a.log.Info("webhook registrations removed", "organization_id", org, "count", len(removed))
	return removed, nil
}

// Uninstall disconnects the organization: disables its license webhooks,
// unregisters the Client ID's webhooks when no other organization is still
// installed (registrations are shared by all), revokes the token and deletes
// the stored installation. Remote steps are best effort (the token may
// already be revoked); the local deletion always happens. The returned error
// lists the remote steps that failed.
func (a *App) Uninstall(ctx context.Context, org string) error {
	rec, err := a.store.loadInstallation(org)
	if err != nil {
		return err
	}
	if rec == nil {
		return ErrNotInstalled
	}
	var warn []error
	if err := a.setLicenseWebhooks(ctx, org, false); err != nil {
		warn = append(warn, fmt.Errorf("disable license webhooks: %w", err))
	}
	// Whether another organization is still installed, and unregistering
	// when none is, happen under the registrations lock: an install
	// reconciling at the same time then either sees the set gone and
	// re-makes it, or keeps it.
	unlock, err := a.lockRegistrations(ctx)
	if err != nil {
		return err
	}
	orgs, err := a.store.installedOrganizations()
	if err != nil {
		unlock()
		return err
	}
	if !slices.ContainsFunc(orgs, func(o string) bool { return o != org }) {
		if _, err := a.unregister(ctx, org); err != nil {
			warn = append(warn, fmt.Errorf("unregister webhooks: %w", err))
		}
	}
	unlock()
	if rec, _ := a.store.loadInstallation(org); rec != nil {
		if err := a.revoke(ctx, secret.Secret(rec.AccessToken)); err != nil {
			warn = append(warn, fmt.Errorf("revoke token: %w", err))
		}
	}
	if err := a.forget(org); err != nil {
		return err
	}
	a.log.Info("organization uninstalled", "organization_id", org, "remote_failures", len(warn))
	return errors.Join(warn...)
}

// forget deletes everything stored about the organization.
func (a *App) forget(org string) error {
	if err := a.store.deleteInstallation(org); err != nil {
		return err
	}
	a.secrets.invalidate()
	a.dir.drop(org)
	a.mu.Lock()
	delete(a.last, org)
	a.mu.Unlock()
	return nil
}

// LicenseWebhooksEnabled reports get_license_webhooks_state for the organization.
func (a *App) LicenseWebhooksEnabled(ctx context.Context, org string) (bool, error) {
	return a.licenseWebhooksEnabled(ctx, org)
}

// previousSecretGrace is how long the previous registration secret is still
// accepted after a rotation: longer than LiveChat's retries of a delivery
// (about a minute, webhooks.md §2) and than any process's secret cache.
const previousSecretGrace = 15 * time.Minute
