package ingest

import (
	"encoding/json"
	"net/http"
	"time"
)

// Status is what ingest reports on its admin listener (GET /status) for
// `lcpipe status`: the webhooks it acknowledged that are not in Kafka yet,
// in the spool (Kafka away or slow) or quarantined (Kafka refused them).
type Status struct {
	Version string `json:"version"`
	Spool   struct {
		Segments int   `json:"segments"`
		Records  int64 `json:"records"`
		Bytes    int64 `json:"bytes"`
		// MaxBytes is the cap (SPOOL_MAX_BYTES); UsedBytes counts the
		// quarantine too, as the cap does.
		MaxBytes  int64 `json:"max_bytes"`
		UsedBytes int64 `json:"used_bytes"`
		// OldestAgeSeconds is the age of the oldest spooled webhook (0 when
		// empty); an upper bound while a segment drains.
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	} `json:"spool"`
	Quarantine struct {
		Dir   string `json:"dir"`
		Files int64  `json:"files"`
		Bytes int64  `json:"bytes"`
	} `json:"quarantine"`
	Counters Counters `json:"counters"`
}

// Status returns the current spool and quarantine depth and the counters.
func (s *Server) Status() Status {
	var st Status
	st.Version = s.cfg.Version
	sp := s.spool.Stats()
	st.Spool.Segments, st.Spool.Records, st.Spool.Bytes, st.Spool.MaxBytes = sp.Segments, sp.Records, sp.Bytes, sp.MaxBytes
	if first, err := s.spool.Oldest(); err == nil && first != nil {
		if r, err := decodeSpoolEntry(first); err == nil && !r.Timestamp.IsZero() {
			st.Spool.OldestAgeSeconds = max(time.Since(r.Timestamp).Seconds(), 0)
		}
	}
	st.Quarantine.Dir = s.quar.Dir()
	st.Quarantine.Files, st.Quarantine.Bytes = s.quar.Size()
	st.Spool.UsedBytes = st.Spool.Bytes + st.Quarantine.Bytes
	st.Counters = s.Stats().Counters
	return st
}

// StatusHandler serves Status as JSON. Mount it on the admin listener
// (internal/admin), never on the public webhook listener.
func (s *Server) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Status())
	})
}
