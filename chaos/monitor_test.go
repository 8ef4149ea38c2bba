package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// monitor samples the run: each ingest's spool depth and counters (its
// admin /status) and the processors' group assignment (every change of a
// stable assignment is a rebalance that finished).
type monitor struct {
	ingests []*ingestChild
	adm     *kadm.Client
	group   string
	tl      *timeline

	mu sync.Mutex
	// maxRecords/maxBytes: deepest spool seen, per ingest and summed.
	maxRecords, maxBytes map[string]int64
	maxTotal             int64
	maxTotalBytes        int64
	// spooled/drained: counters summed over each process lifetime (the
	// last value seen before a restart reset them).
	spooled, drained map[string]int64
	lastSp, lastDr   map[string]int64
	rebalances       int
	lastAssign       string
	owners           map[int32]string // partition → client id, last stable assignment
}

func newMonitor(ingests []*ingestChild, adm *kadm.Client, group string, tl *timeline) *monitor {
	return &monitor{ingests: ingests, adm: adm, group: group, tl: tl,
		maxRecords: map[string]int64{}, maxBytes: map[string]int64{},
		spooled: map[string]int64{}, drained: map[string]int64{}, lastSp: map[string]int64{}, lastDr: map[string]int64{}}
}

func (m *monitor) run(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m.sampleSpools(ctx)
		if n++; n%2 == 0 {
			m.sampleGroup(ctx)
		}
	}
}

func (m *monitor) sampleSpools(ctx context.Context) {
	var total, totalBytes int64
	for _, in := range m.ingests {
		c, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
		st, err := in.status(c)
		cancel()
		if err != nil {
			continue
		}
		m.mu.Lock()
		m.maxRecords[in.name] = max(m.maxRecords[in.name], st.Spool.Records)
		m.maxBytes[in.name] = max(m.maxBytes[in.name], st.Spool.Bytes)
		if st.Counters.Spooled < m.lastSp[in.name] || st.Counters.Drained < m.lastDr[in.name] {
			// Restarted: bank the previous life's totals.
			m.spooled[in.name] += m.lastSp[in.name]
			m.drained[in.name] += m.lastDr[in.name]
		}
		m.lastSp[in.name], m.lastDr[in.name] = st.Counters.Spooled, st.Counters.Drained
		m.mu.Unlock()
		total += st.Spool.Records
		totalBytes += st.Spool.Bytes
	}
	m.mu.Lock()
	m.maxTotal = max(m.maxTotal, total)
	m.maxTotalBytes = max(m.maxTotalBytes, totalBytes)
	m.mu.Unlock()
}

func (m *monitor) sampleGroup(ctx context.Context) {
	c, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	gs, err := m.adm.DescribeGroups(c, m.group)
	if err != nil {
		return
	}
	g, ok := gs[m.group]
	if !ok || g.Err != nil || g.State != "Stable" {
		return
	}
	var parts []string
	owners := map[int32]string{}
	for _, mem := range g.Members {
		a, ok := mem.Assigned.AsConsumer()
		if !ok {
			continue
		}
		var ps []string
		for _, tp := range a.Topics {
			for _, p := range tp.Partitions {
				ps = append(ps, fmt.Sprint(p))
				owners[p] = mem.ClientID
			}
		}
		sort.Strings(ps)
		parts = append(parts, mem.ClientID+"/"+mem.MemberID+"="+strings.Join(ps, ","))
	}
	sort.Strings(parts)
	fp := strings.Join(parts, " ")
	m.mu.Lock()
	defer m.mu.Unlock()
	m.owners = owners
	if fp != m.lastAssign {
		if m.lastAssign != "" {
			m.rebalances++
		}
		m.lastAssign = fp
		m.tl.logf("group: %d members, assignment %s", len(g.Members), shortAssign(parts))
	}
}

// owner returns the client id that owned partition p at the last look.
func (m *monitor) owner(p int32) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.owners[p]
}

// shortAssign prints members by client id with their partitions.
func shortAssign(parts []string) string {
	var out []string
	for _, p := range parts {
		client, rest, _ := strings.Cut(p, "/")
		_, ps, _ := strings.Cut(rest, "=")
		out = append(out, client+"["+ps+"]")
	}
	return strings.Join(out, " ")
}

// finish banks the last values seen.
func (m *monitor) finish() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.lastSp {
		m.spooled[name] += m.lastSp[name]
		m.drained[name] += m.lastDr[name]
		m.lastSp[name], m.lastDr[name] = 0, 0
	}
}
