package lcapp

import (
	"context"
	"sync"
)

// Directory maps agent and group ids to names per organization, from
// list_agents and list_groups. Lookups never block and never fail: an
// unknown id (or an organization not loaded yet, or a failing API) gives ""
// and the caller keeps the id — enrichment must never stop data.
type Directory struct {
	mu     sync.RWMutex
	agents map[string]map[string]string
	groups map[string]map[uint32]string
	wanted map[string]bool
}

func newDirectory() *Directory {
	return &Directory{agents: map[string]map[string]string{}, groups: map[string]map[uint32]string{}, wanted: map[string]bool{}}
}

// AgentName returns the agent's name, or "" when unknown. A nil Directory
// (OAuth not configured) knows no names.
func (d *Directory) AgentName(organizationID, agentID string) string {
	if d == nil {
		return ""
	}
	d.mu.RLock()
	m, ok := d.agents[organizationID]
	name := m[agentID]
	d.mu.RUnlock()
	if !ok {
		d.want(organizationID)
	}
	return name
}

// GroupName returns the group's name, or "" when unknown (nil-safe too).
func (d *Directory) GroupName(organizationID string, groupID uint32) string {
	if d == nil {
		return ""
	}
	d.mu.RLock()
	m, ok := d.groups[organizationID]
	name := m[groupID]
	d.mu.RUnlock()
	if !ok {
		d.want(organizationID)
	}
	return name
}

// want schedules a refresh of the organization at the next poll.
func (d *Directory) want(org string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.wanted[org] = true
	d.mu.Unlock()
}

func (d *Directory) takeWanted() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.wanted))
	for o := range d.wanted {
		out = append(out, o)
	}
	clear(d.wanted)
	return out
}

func (d *Directory) set(org string, agents map[string]string, groups map[uint32]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if agents != nil {
		d.agents[org] = agents
	}
	if groups != nil {
		d.groups[org] = groups
	}
}

func (d *Directory) drop(org string) {
	d.mu.Lock()
	delete(d.agents, org)
	delete(d.groups, org)
	d.mu.Unlock()
}

// refreshDirectory re-lists agents and groups of one organization. A failed
// list keeps the previous names (logged); organizations that are not
// installed are skipped quietly.
func (a *App) refreshDirectory(ctx context.Context, org string) {
	if rec, err := a.store.loadInstallation(org); err != nil || rec == nil || rec.NeedsReauth {
		return
	}
	var agents []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	var am map[string]string
	if err := a.call(ctx, org, "list_agents", struct{}{}, &agents); err != nil {
		a.log.Warn("directory: list_agents failed; keeping previous names", "organization_id", org, "err", err)
	} else {
		am = make(map[string]string, len(agents))
		for _, ag := range agents {
			am[ag.ID] = ag.Name
		}
	}
	var groups []struct {
		ID   uint32 `json:"id"`
		Name string `json:"name"`
	}
	var gm map[uint32]string
	if err := a.call(ctx, org, "list_groups", struct{}{}, &groups); err != nil {
		a.log.Warn("directory: list_groups failed; keeping previous names", "organization_id", org, "err", err)
	} else {
		gm = make(map[uint32]string, len(groups))
		for _, g := range groups {
			gm[g.ID] = g.Name
		}
	}
	a.dir.set(org, am, gm)
}

func (a *App) refreshAll(ctx context.Context) {
	orgs, err := a.store.installedOrganizations()
	if err != nil {
		a.log.Warn("directory: cannot list installations", "err", err)
		return
	}
	for _, org := range orgs {
		if ctx.Err() != nil {
			return
		}
		a.refreshDirectory(ctx, org)
	}
}

// RefreshDirectory re-lists one organization now (used after install and by tests).
func (a *App) RefreshDirectory(ctx context.Context, organizationID string) {
	a.refreshDirectory(ctx, organizationID)
}
